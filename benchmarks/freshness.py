"""``python -m benchmarks.freshness --seconds S --rate R [--rows N]``: how fresh follow mode is.

Why: change capture promises that a commit is searchable within about a second, that an idle
follower leaves the source alone, that the triggers cost little, and that a parent change
rewrites no root row (issue 9: change capture a team can adopt). This measures all four on the real services.

How, in one process, on a database and an index prefix of its own (both removed at the end):

1. A fresh database ``bench_fresh_<hex>`` with the demo schema and its generated tracking,
   ``--rows`` generated products (one in ten moved to brand 1, so that brand has many
   products). A first ``Operations.sync`` builds ``v1`` under the prefix and the alias
   ``<prefix>_read`` is pointed at it.
2. **Latency.** A follower thread runs ``Operations.follow`` for the whole measurement. A writer
   commits, at ``--rate`` per second for ``--seconds``, single-row updates of distinct products,
   each setting a unique marker as the product's ``name`` (indexed by v1 as ``name.raw``) and
   noting ``time.monotonic()`` right after its commit. A prober asks OpenSearch every 20 ms,
   through the read alias, which pending markers are searchable (a ``terms`` query); latency is
   the arrival of the first answer that shows a marker minus its commit: an upper bound, to
   within one probe interval. The prober runs to the end of the idle window, so a late change
   is measured, not cut off. ``follower_wait_*`` is the part before the sync that delivered it.
   With ``--stall S``, a session in another database of the server holds an xid idle in
   transaction for the first S seconds of writing (:class:`Stall`); the changes committed
   meanwhile are reported apart (``stalled_latency_*``, ``stalled_changes_lost``), with the
   follower's lag sampled during it (``lag_rows_max_during_stall``).
3. **Parent rename.** Brand 1 is renamed in one short transaction; ``n_tup_upd`` of ``products``
   is read before and after on the same connection (``pg_stat_force_next_flush`` then
   ``pg_stat_clear_snapshot``: PostgreSQL 15 keeps a backend's counts pending until it is idle),
   and the time until every child document shows the new brand through the alias is noted.
4. **Idle.** See :func:`idle_load`: the source database's transaction counters, read from
   another database, over the follower's last quiet seconds.
5. **Trigger overhead.** After the follower has ended: ``products`` (tracked) and an identical
   untracked copy, each updated on its first 10 000 rows, alternately, ``--repeats`` times;
   the ratio is the median of the per-pair ratios. Each UPDATE is one short transaction.

The last line of stdout is one JSON object (the fields are listed in the table printed above it).
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from opensearchpy import OpenSearch
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from catalogue.generate import create_schema, generate
from catalogue.source import CATALOGUE
from catalogue.versions import V1
from etl_core import IndexVersion
from etl_core.flow.follow import FollowResult
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import OpenSearchSink, make_client

PREFIX = "bench-fresh-"
RENAMED_BRAND = 1
MOVE_TO_BRAND_ONE_IN = 10  # one product in ten joins brand 1 before the first sync
PROBE_INTERVAL_S = 0.02
PROBE_BATCH = 1000  # markers asked about per probe (oldest first)
START_TIMEOUT_S = 30.0  # the follower's first sync
START_SLACK_S = 5.0  # what the follower's window allows for it
CATCH_UP_S = 15.0  # budget, after the writer stops, for the last markers to show up
RENAME_S = 15.0  # budget for the renamed brand to reach every child document
SETTLE_S = 11.0  # PostgreSQL 15 may hold a busy backend's counts up to 10 s (PGSTAT_IDLE_INTERVAL)
FOLLOW_TAIL_S = 1.0  # the idle window ends this long before the follower's deadline
FOLLOW_IDLE_S = 30.0  # Operations.follow's default safety poll
OVERHEAD_ROWS = 10_000
UNTRACKED = "products_untracked"


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; ``inf`` entries (never seen) sort last, and a
    percentile that falls among them is None: it is not known, only that it is beyond the run."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q
    low, high = int(at), min(int(at) + 1, len(ordered) - 1)
    a, b = ordered[low], ordered[high]
    if at == low:
        b = a
    if a == float("inf") or b == float("inf"):
        return None
    return a + (b - a) * (at - low)


def rounded(value: float | None, digits: int = 4) -> float | None:
    """None for unknown or infinite (a change never seen)."""
    return None if value is None or value == float("inf") else round(value, digits)


# -- database ---------------------------------------------------------------------------------


def admin_engine(base: Settings) -> Engine:
    return make_engine(base.source_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def short_lived(url: URL, **kwargs: Any) -> Engine:
    """No pool: every connection is a backend that exits (and flushes its statistics) when closed."""
    return make_engine(url, poolclass=NullPool, **kwargs)


def prepare_database(base: Settings, name: str, rows: int, seed: int) -> Settings:
    admin = admin_engine(base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.source_url.set(database=name)
    engine = short_lived(url)
    try:
        create_schema(engine)  # the demo tables with their generated tracking
        log(f"generating {rows} rows (seed {seed})")
        generate(engine, rows, seed)
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE products SET brand_id = :b WHERE id % {MOVE_TO_BRAND_ONE_IN} = 0"),
                {"b": RENAMED_BRAND},
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return dataclasses.replace(base, source_url=url, state_url=url)


def drop_database(base: Settings, name: str) -> None:
    admin = admin_engine(base)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# -- the follower, instrumented ---------------------------------------------------------------


class TimingSink(OpenSearchSink):
    """The follower's sink: notes when each sync starts (its first call, ``ensure_indices``) and
    when it ends caught up (``finish_backfill``: the refresh that makes documents searchable)."""

    def __init__(self, client: OpenSearch, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.lock = threading.Lock()
        self.starts: list[float] = []
        self.syncs: list[tuple[float, float]] = []  # (start, end) of each sync that caught up

    def ensure_indices(self, versions: Sequence[IndexVersion[Any]]) -> set[str]:
        with self.lock:
            self.starts.append(time.monotonic())
        return super().ensure_indices(versions)

    def finish_backfill(
        self, versions: Sequence[IndexVersion[Any]], changed: Collection[str] | None = None
    ) -> None:
        super().finish_backfill(versions, changed)
        with self.lock:
            self.syncs.append((self.starts[-1], time.monotonic()))

    def synced(self) -> int:
        with self.lock:
            return len(self.syncs)

    def last_end(self) -> float:
        with self.lock:
            return self.syncs[-1][1] if self.syncs else 0.0


class StatementCounter:
    """Client-side count of what the follower's engine sends: statements, and pool checkouts
    (each of which costs a ``pool_pre_ping`` round trip)."""

    def __init__(self, engine: Engine) -> None:
        self.statements = 0
        self.checkouts = 0
        self.lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_: Any) -> None:
        with self.lock:
            self.statements += 1

    def _checkout(self, *_: Any) -> None:
        with self.lock:
            self.checkouts += 1

    def total(self) -> int:
        with self.lock:
            return self.statements + self.checkouts


class Follower(threading.Thread):
    def __init__(
        self, conns: Connections, version: IndexVersion[Any], sink: TimingSink, window_s: float
    ) -> None:
        super().__init__(name="follower", daemon=True)
        self.conns, self.version, self.sink, self.window_s = conns, version, sink, window_s
        self.deadline = 0.0
        self.result: FollowResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        self.deadline = time.monotonic() + self.window_s
        try:
            self.result = Operations(self.conns, CATALOGUE).follow(
                [self.version],
                window_s=self.window_s,
                idle_s=FOLLOW_IDLE_S,
                sink=self.sink,
            )
        except BaseException as exc:  # reported by the main thread
            self.error = exc


# -- writer and prober ------------------------------------------------------------------------


class Markers:
    """Markers committed and not yet seen, and the latency of those seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}  # marker -> commit time (insertion order = commit order)
        self.commits: dict[str, float] = {}
        self.xids: dict[str, int] = {}
        self.seen: dict[str, float] = {}

    def committed(self, marker: str, at: float, xid: int) -> None:
        with self.lock:
            self.pending[marker] = at
            self.commits[marker] = at
            self.xids[marker] = xid

    def oldest(self, n: int) -> list[str]:
        with self.lock:
            return [m for m, _ in zip(self.pending, range(n), strict=False)]

    def visible(self, markers: Sequence[str], at: float) -> None:
        with self.lock:
            for m in markers:
                if self.pending.pop(m, None) is not None:
                    self.seen[m] = at

    def left(self) -> int:
        with self.lock:
            return len(self.pending)


class Prober(threading.Thread):
    def __init__(self, client: OpenSearch, alias: str, markers: Markers, stop: threading.Event) -> None:
        super().__init__(name="prober", daemon=True)
        self.client, self.alias, self.markers, self.stop = client, alias, markers, stop
        self.probes = 0
        self.round_trips: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ask = self.markers.oldest(PROBE_BATCH)
                if ask:
                    sent = time.monotonic()
                    response = self.client.search(
                        index=self.alias,
                        body={"query": {"terms": {"name.raw": ask}}, "_source": ["name"], "size": len(ask)},
                    )
                    arrived = time.monotonic()
                    self.probes += 1
                    self.round_trips.append(arrived - sent)
                    found = [h["_source"]["name"] for h in response["hits"]["hits"]]
                    self.markers.visible(found, arrived)
                self.stop.wait(PROBE_INTERVAL_S)
        except BaseException as exc:
            self.error = exc


class Stall(threading.Thread):
    """``--stall``: a session in another database of the same server (``bench_stall_<run>``)
    writes one row and stays idle in transaction, holding its xid, from when the writer starts
    for ``seconds``. The reader that came before stopped every source on the server for as long
    as that lasted; this measures that it now delays nothing. Meanwhile the follower's lag is
    sampled every 250 ms (one statement from the benchmark's own connection), to show that
    committed changes do not pile up behind the stall."""

    def __init__(
        self, url: URL, seconds: float, lag: Any, stop: threading.Event, began: threading.Event
    ) -> None:
        super().__init__(name="stall", daemon=True)
        self.url, self.seconds, self.lag, self.stop, self.began = url, seconds, lag, stop, began
        self.window: tuple[float, float] = (0.0, 0.0)
        self.lag_rows: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        engine = make_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS held (i int)")
                conn.commit()
                conn.exec_driver_sql("INSERT INTO held VALUES (1)")  # an xid, held until rollback
                start = time.monotonic()
                self.began.set()
                while not self.stop.is_set() and time.monotonic() < start + self.seconds:
                    self.lag_rows.append(self.lag())
                    self.stop.wait(0.25)
                conn.rollback()
                self.window = (start, time.monotonic())
        except BaseException as exc:
            self.error = exc
            self.began.set()
        finally:
            engine.dispose()


def write(engine: Engine, markers: Markers, run: str, ids: list[int], rate: float, seconds: float) -> int:
    """Single-row updates at ``rate`` per second, each its own short transaction; returns how many."""
    n = 0
    began = time.monotonic()
    with engine.connect() as conn:
        while (due := began + n / rate) < began + seconds:
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            marker = f"fresh-{run}-{n}"
            xid = conn.execute(
                text(
                    "UPDATE products SET name = :m WHERE id = :id"
                    " RETURNING pg_current_xact_id()::text::bigint"
                ),
                {"m": marker, "id": ids[n % len(ids)]},
            ).scalar_one()
            conn.commit()
            markers.committed(marker, time.monotonic(), int(xid))
            n += 1
    return n


def wait_until(condition: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def latency_report(
    markers: Markers, prober: Prober, sink: TimingSink, began: float, busy_end: float, stall: Stall | None
) -> dict[str, Any]:
    """Latency percentiles over every change (a change never seen counts as infinitely late),
    apart for the changes committed while ``stall`` held its transaction open, and where the time
    went: ``follower_wait`` is commit → the start of the sync that delivered the change (the last
    one started before it was seen; 0 when that sync started earlier), the rest is the sync
    itself and the probe."""
    inf = float("inf")
    with sink.lock:
        starts, syncs = sorted(sink.starts), list(sink.syncs)
    held = stall.window if stall is not None else (inf, inf)
    latencies, stalled, follower_waits = [], [], []
    lost = 0
    late: list[str] = []
    for m, at in markers.commits.items():
        seen = markers.seen.get(m, inf)
        delivered = starts[bisect.bisect_right(starts, seen) - 1] if seen != inf else inf
        latencies.append(seen - at)
        follower_waits.append(max(0.0, delivered - at))
        if held[0] <= at <= held[1]:
            stalled.append(seen - at)
            lost += seen == inf
        if seen - at > 2.0:
            late.append(m)
    if late:
        log(f"{len(late)} changes took more than 2 s; the first few:")
        for m in late[:10]:
            at, seen = markers.commits[m], markers.seen.get(m, inf)
            log(
                f"  {m} (xid {markers.xids[m]}): visible after {seen - at:.2f} s; follower syncs started at "
                + ", ".join(f"{s - at:+.2f}" for s in starts if at - 0.5 <= s <= min(seen, at + 60) + 0.5)
            )
    durations = [e - s for s, e in syncs if began <= s <= busy_end]
    finite = [x for x in latencies if x != inf]
    out = {
        "changes_not_visible": markers.left(),
        "latency_p50_s": rounded(percentile(latencies, 0.50)),
        "latency_p95_s": rounded(percentile(latencies, 0.95)),
        "latency_p99_s": rounded(percentile(latencies, 0.99)),
        "latency_max_s": rounded(max(finite)) if finite else None,
        "changes_over_2s": len(late),
        "follower_wait_p50_s": rounded(percentile(follower_waits, 0.50)),
        "follower_wait_p95_s": rounded(percentile(follower_waits, 0.95)),
        "follower_wait_max_s": rounded(max(follower_waits)),
        "sync_duration_p50_s": rounded(percentile(durations, 0.50)),
        "sync_duration_p95_s": rounded(percentile(durations, 0.95)),
        "probes": prober.probes,
        "probe_round_trip_p50_s": rounded(percentile(prober.round_trips, 0.5)),
    }
    if stall is not None:
        unstalled = [
            x
            for m, x in zip(markers.commits, latencies, strict=True)
            if not held[0] <= markers.commits[m] <= held[1]
        ]
        out.update(
            stall_s=rounded(held[1] - held[0], 2),
            stalled_changes=len(stalled),
            stalled_latency_p50_s=rounded(percentile(stalled, 0.50)),
            stalled_latency_p95_s=rounded(percentile(stalled, 0.95)),
            stalled_latency_max_s=rounded(max((x for x in stalled if x != inf), default=0.0)),
            stalled_changes_lost=lost,
            unstalled_latency_p95_s=rounded(percentile(unstalled, 0.95)),
            lag_rows_max_during_stall=max(stall.lag_rows, default=None),
            lag_samples_during_stall=len(stall.lag_rows),
        )
    return out


# -- parent rename ----------------------------------------------------------------------------


def updated_products(conn: Connection) -> int:
    """``n_tup_upd`` of products, fresh: as tests/integration/test_tracking.py reads it. PG15 keeps
    a backend's counts pending until it is idle; force this backend's flush, then read past the
    cached stats snapshot of this session."""
    conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    conn.commit()  # idle after COMMIT: the flush happens before the next statement is read
    conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    n = conn.exec_driver_sql(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'products'::regclass"
    ).scalar_one()
    conn.commit()
    return int(n)


def parent_rename(url: URL, client: OpenSearch, alias: str, run: str) -> dict[str, Any]:
    engine = short_lived(url)
    new_name = f"fresh-brand-{run}"
    try:
        with engine.connect() as conn:
            children = int(
                conn.execute(
                    text("SELECT count(*) FROM products WHERE brand_id = :b AND deleted_at IS NULL"),
                    {"b": RENAMED_BRAND},
                ).scalar_one()
            )
            conn.commit()
            before = updated_products(conn)
            conn.execute(
                text("UPDATE brands SET name = :n WHERE id = :b"), {"n": new_name, "b": RENAMED_BRAND}
            )
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            conn.commit()
            committed = time.monotonic()
            after = updated_products(conn)
    finally:
        engine.dispose()

    def renamed() -> int:
        body = {"query": {"term": {"brand": new_name}}}
        return int(client.count(index=alias, body=body)["count"])

    done = wait_until(lambda: renamed() >= children, RENAME_S, PROBE_INTERVAL_S)
    return {
        "parent_rename_children": children,
        "parent_rename_root_rows_updated": after - before,
        "parent_rename_visible_s": rounded(time.monotonic() - committed, 3) if done else None,
    }


# -- idle -------------------------------------------------------------------------------------


def idle_load(
    stats: Engine, database: str, counter: StatementCounter, sink: TimingSink, until: float
) -> dict[str, Any]:
    """Transactions the source database runs while nothing changes, over [now, ``until``].

    Method: ``pg_stat_database.xact_commit + xact_rollback`` of the bench database, read from a
    connection to ANOTHER database (``postgres``), so the measuring adds nothing to it. The writer
    and every helper connection of this benchmark have been closed by then (NullPool engines), so
    the only client left on the bench database is the follower (its pooled engine and its LISTEN
    connection). Every autocommit statement the follower sends is one transaction, and so is each
    ``pool_pre_ping`` on checkout, so this counts its queries; a statement inside a multi-statement
    transaction would be undercounted, hence the client-side count beside it (statements through
    the follower's engine plus pool checkouts). PostgreSQL 15 may hold a busy backend's counts for
    up to 10 s, so the caller lets the follower sit idle for ``SETTLE_S`` first: counts of the
    busy phase land before the window, not in it. Autovacuum workers also run transactions in
    the database; the bench database is vacuumed before the window, and any autovacuum seen in
    ``pg_stat_activity`` during it is reported. The window runs to the end of the follower's own
    window, so it is usually longer than ``--idle-seconds``; ``idle_syncs`` says how many of the
    follower's safety polls (one every ``FOLLOW_IDLE_S``) fell into it. Checked by hand with a
    5 s poll: 6 polls in 30 s gave 76 transactions server-side and 72 client-side, about 12 per
    poll (6 statements, each after its own checkout and pre-ping).
    """

    def transactions() -> int:
        with stats.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return int(
                conn.execute(
                    text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"),
                    {"d": database},
                ).scalar_one()
            )

    def autovacuum() -> int:
        with stats.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d"
                        " AND backend_type = 'autovacuum worker'"
                    ),
                    {"d": database},
                ).scalar_one()
            )

    began, tx_before, client_before = time.monotonic(), transactions(), counter.total()
    autovacuum_seen = 0
    while time.monotonic() < until:
        autovacuum_seen += autovacuum()
        time.sleep(min(0.5, max(0.0, until - time.monotonic())))
    tx_after, client_after = transactions(), counter.total()
    spent = time.monotonic() - began
    with sink.lock:
        syncs = sum(1 for s in sink.starts if s >= began)
    return {
        "idle_window_s": round(spent, 2),
        "idle_transactions": tx_after - tx_before,
        "idle_queries_per_s": round((tx_after - tx_before) / spent, 4),
        "idle_client_statements": client_after - client_before,
        "idle_client_statements_per_s": round((client_after - client_before) / spent, 4),
        "idle_syncs": syncs,
        "idle_autovacuum_samples": autovacuum_seen,
    }


# -- trigger overhead -------------------------------------------------------------------------


def trigger_overhead(url: URL, rows: int, repeats: int) -> dict[str, Any]:
    """The same UPDATE of the first ``rows`` rows of ``products`` (tracked) and of an identical
    untracked copy, alternately, each pair after a VACUUM of both; the median per-pair ratio.
    Also the share of those updates PostgreSQL made HOT on each table: the triggers only append
    to the log, so tracking must not change it."""
    engine = short_lived(url)
    vacuum = short_lived(url, isolation_level="AUTOCOMMIT")
    update = "UPDATE {} SET price_cents = price_cents + 1 WHERE id <= :n"

    def timed(table: str) -> tuple[float, int]:
        began = time.perf_counter()
        with engine.begin() as conn:
            n = conn.execute(text(update.format(table)), {"n": rows}).rowcount
        return time.perf_counter() - began, n

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {UNTRACKED} (LIKE products INCLUDING ALL)")
            conn.exec_driver_sql(f"INSERT INTO {UNTRACKED} SELECT * FROM products")
        with vacuum.connect() as conn:
            conn.exec_driver_sql(f"VACUUM (FULL, ANALYZE) products, {UNTRACKED}")
        timed("products"), timed(UNTRACKED)  # warm-up, not counted
        before = hot_counts(vacuum)
        tracked_s: list[float] = []
        untracked_s: list[float] = []
        updated = 0
        for i in range(repeats):
            with vacuum.connect() as conn:
                conn.exec_driver_sql(f"VACUUM products, {UNTRACKED}")
            order = ("products", UNTRACKED) if i % 2 == 0 else (UNTRACKED, "products")
            for table in order:
                s, updated = timed(table)
                (tracked_s if table == "products" else untracked_s).append(s)
        after = hot_counts(vacuum)
    finally:
        engine.dispose()
        vacuum.dispose()
    return {
        "overhead_rows_updated": updated,
        "overhead_tracked_s": [round(s, 4) for s in tracked_s],
        "overhead_untracked_s": [round(s, 4) for s in untracked_s],
        "trigger_overhead_ratio": round(
            statistics.median(t / u for t, u in zip(tracked_s, untracked_s, strict=True)), 3
        ),
        **{
            f"overhead_hot_share_{'tracked' if table == 'products' else 'untracked'}": round(
                (after[table][1] - before[table][1]) / max(1, after[table][0] - before[table][0]), 3
            )
            for table in ("products", UNTRACKED)
        },
    }


def hot_counts(engine: Engine) -> dict[str, tuple[int, int]]:
    """``(n_tup_upd, n_tup_hot_upd)`` of both tables, fresh (the updating sessions have ended:
    NullPool, so their counts were flushed when they closed)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        rows = conn.exec_driver_sql(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            f" WHERE relname IN ('products', '{UNTRACKED}')"
        ).all()
    return {name: (int(upd), int(hot)) for name, upd, hot in rows}


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.freshness")
    parser.add_argument("--seconds", type=float, required=True, help="how long the writer writes")
    parser.add_argument("--rate", type=float, required=True, help="single-row commits per second")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="the idle window, at least")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of UPDATEs for the trigger overhead")
    parser.add_argument(
        "--stall",
        type=float,
        default=0.0,
        help="seconds a session in another database holds an xid idle in transaction from the start",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.rows <= 0:
        parser.error("--seconds, --rate and --rows must be positive")

    base = Settings.from_env()
    run = uuid.uuid4().hex[:8]
    database = f"bench_fresh_{run}"
    prefix = f"{PREFIX}{run}"
    alias = f"{prefix}_read"
    r: dict[str, Any] = {"rows": args.rows, "rate": args.rate, "seconds": args.seconds}
    conns: Connections | None = None
    follower: Follower | None = None
    prober: Prober | None = None
    stall: Stall | None = None
    stall_db = f"bench_stall_{run}"
    stop = threading.Event()
    probe_client = make_client(
        base.opensearch_url,
        user=base.opensearch_user,
        password=base.opensearch_password,
        verify_certs=base.opensearch_verify_certs,
        ca_certs=base.opensearch_ca_certs,
    )
    stats = make_engine(
        base.source_url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        settings = prepare_database(base, database, args.rows, args.seed)
        conns = Connections(settings, CATALOGUE.name)
        conns.state.create()
        v1 = dataclasses.replace(V1, index=f"{prefix}-{V1.index}")
        log(f"first sync of {v1.key} into {v1.index}")
        first = Operations(conns, CATALOGUE).sync([v1])
        assert first.caught_up and first.versions[v1.key].indexed == args.rows, first
        conns.sink.point_alias(alias, v1.index)

        sink = TimingSink(
            conns.client,
            max_chunk_bytes=conns.sink.max_chunk_bytes,
            chunk_size=conns.sink.chunk_size,
            backoff=conns.sink.backoff,
            describe=conns.sink.describe,
        )
        counter = StatementCounter(conns.source_engine)
        window_s = START_SLACK_S + args.seconds + CATCH_UP_S + RENAME_S + SETTLE_S + args.idle_seconds
        window_s += FOLLOW_TAIL_S
        follower = Follower(conns, v1, sink, window_s)
        follower.start()
        if not wait_until(lambda: sink.synced() >= 1 or not follower.is_alive(), START_TIMEOUT_S):
            raise RuntimeError("the follower's first sync did not finish")
        if follower.error is not None:
            raise follower.error

        log(f"writer: {args.rate}/s for {args.seconds} s; the follower's window is {window_s:.0f} s")
        markers = Markers()
        prober = Prober(probe_client, alias, markers, stop)
        prober.start()
        if args.stall > 0:
            with stats.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{stall_db}"')
            reader = conns.extractor(CATALOGUE)

            def lag_rows() -> int:
                return reader.lag(conns.cursors.load([v1.key])).rows_behind[v1.key]

            held = threading.Event()
            # within the writing: its lag samples would count in the idle measurement after it
            held_s = min(args.stall, args.seconds)
            stall = Stall(base.source_url.set(database=stall_db), held_s, lag_rows, stop, held)
            stall.start()
            held.wait(30)
            if stall.error is not None:
                raise stall.error
            log(f"stall: a session in {stall_db} holds an xid idle in transaction for {held_s} s")
        ids = list(range(1, args.rows + 1))
        random.Random(args.seed).shuffle(ids)
        statements_before, syncs_before = counter.total(), sink.synced()
        writer = make_engine(settings.source_url, poolclass=NullPool)
        began = time.monotonic()
        try:
            r["changes"] = write(writer, markers, run, ids, args.rate, args.seconds)
        finally:
            writer.dispose()
        r["write_s"] = round(time.monotonic() - began, 3)
        r["achieved_rate"] = round(r["changes"] / r["write_s"], 2)
        # The prober keeps watching until the end of the idle window: a late change is measured,
        # not cut off. The rename waits for this budget at most.
        caught_up = wait_until(lambda: markers.left() == 0 or prober.error is not None, CATCH_UP_S)
        busy_end = time.monotonic()
        syncs_busy = sink.synced() - syncs_before
        r["changes_left_after_catch_up_budget"] = markers.left()
        r["caught_up_within_budget"] = caught_up
        r["syncs_while_writing"] = syncs_busy
        # statements through the follower's engine plus checkouts (a pre-ping each), the pending
        # check after each sync included
        r["round_trips_per_sync"] = round((counter.total() - statements_before) / max(1, syncs_busy), 2)

        log(f"parent rename: brand {RENAMED_BRAND}")
        r.update(parent_rename(settings.source_url, probe_client, alias, run))

        log("idle: settling, then counting")
        vacuum = short_lived(settings.source_url, isolation_level="AUTOCOMMIT")
        with vacuum.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        vacuum.dispose()
        wait_until(lambda: time.monotonic() >= sink.last_end() + SETTLE_S, SETTLE_S + 1, 0.2)
        until = follower.deadline - FOLLOW_TAIL_S
        if until - time.monotonic() < 2.0:
            log("the follower's window is nearly over: no idle measurement")
        else:
            r.update(idle_load(stats, database, counter, sink, until))
        stop.set()
        prober.join()
        threads: list[Prober | Stall] = [prober] if stall is None else [prober, stall]
        for thread in threads:
            thread.join()
            if thread.error is not None:
                raise thread.error
        r.update(latency_report(markers, prober, sink, began, busy_end, stall))

        follower.join(timeout=max(0.0, follower.deadline - time.monotonic()) + 60)
        if follower.error is not None:
            raise follower.error
        assert follower.result is not None
        r["syncs"], r["wakeups"] = follower.result.syncs, follower.result.wakeups
        r["polls"], r["indexed"] = follower.result.polls, follower.result.indexed

        log(f"trigger overhead: {OVERHEAD_ROWS} rows, {args.repeats} alternating pairs")
        r.update(trigger_overhead(settings.source_url, OVERHEAD_ROWS, args.repeats))
    finally:
        stop.set()
        if conns is not None:
            conns.client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
            conns.close()
        drop_database(base, database)  # WITH (FORCE): also ends a follower still inside its window
        if follower is not None:
            follower.join(timeout=10)
        for helper in (prober, stall):
            if helper is not None:
                helper.join(timeout=10)
        if stall is not None:
            drop_database(base, stall_db)
        probe_client.close()
        stats.dispose()

    targets = {
        "latency_p50_s": "<= 1",
        "latency_p95_s": "<= 2",
        "unstalled_latency_p95_s": "<= 0.5",
        "stalled_latency_p95_s": "<= 1",
        "stalled_changes_lost": "= 0",
        "idle_queries_per_s": "<= 1",
        "trigger_overhead_ratio": "<= 1.25",
        "parent_rename_root_rows_updated": "= 0",
    }
    for key, value in r.items():
        shown = f"{value:,.4f}" if isinstance(value, float) else str(value)
        print(f"{key:34} {shown:>20} {targets.get(key, '')}")
    print(orjson.dumps(r).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
