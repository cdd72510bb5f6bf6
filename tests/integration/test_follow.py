"""Follow mode on the real services: a follower LISTENs, syncs on each commit, and ends after its
window; a killed one is resumed by the next from the cursors; a second one of the same versions
refuses while the first runs.

What the core promises for followers of one lane: every one only moves a cursor forward (the
cursor store's monotonic merge), never lets a document go backwards (external versions), and is
the only writer of its versions (a lane lock in PostgreSQL, etl_core.state.lanes; the Dagster pool is
the first line). Found here: two unlocked syncs side by side could lose a delete when one of them
skipped deletes of documents the index did not hold yet; unlocked syncs now send every delete.

This module is also the ``--versions`` of the follower subprocesses: ``VERSIONS`` is the demo's
versions under the index prefix in ``ETL_TEST_INDEX_PREFIX`` (a test's own indices).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from catalogue.generate import churn, generate
from catalogue.source import CATALOGUE, TRACKING, Product
from catalogue.versions import VERSIONS as DEMO_VERSIONS
from etl_core.flow.follow import FollowResult
from etl_core.flow.pipeline import SyncResult
from etl_core.flow.pipeline import sync as core_sync
from etl_core.model.cursor import LogCursor, lowest
from etl_core.model.snapshot import Snapshot
from etl_core.model.versions import IndexVersion
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.read.extract import Extractor
from etl_core.settings import Settings
from etl_core.state.lanes import LaneBusy
from tests.integration.harness import FAST_BACKOFF, Harness
from tests.integration.test_capture import extractor, sync
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX_ENV = "ETL_TEST_INDEX_PREFIX"
LISTEN = f'LISTEN "{TRACKING.channel}"'


def prefixed(prefix: str) -> list[IndexVersion[Product]]:
    """The demo versions under a test's index prefix: exactly what ``Harness.versions`` builds."""
    return [dataclasses.replace(v, index=f"{prefix}_{v.key}_{v.index}") for v in DEMO_VERSIONS]


VERSIONS: list[IndexVersion[Product]] = prefixed(os.environ[PREFIX_ENV]) if os.environ.get(PREFIX_ENV) else []


# -- fixtures and helpers ------------------------------------------------------------------------


def connections(h: Harness, settings: Settings) -> Connections:
    """Connections as the CLI builds them (settings from the environment), on the test database."""
    url = h.source_engine.url
    return Connections(
        dataclasses.replace(settings, source_url=url, state_url=url), h.source.name, backoff=FAST_BACKOFF
    )


class Follower(threading.Thread):
    """``Operations.follow`` in a thread, with its own connections; keeps the result or error."""

    def __init__(self, h: Harness, settings: Settings, versions: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.conns = connections(h, settings)
        self.versions = list(versions)
        self.kwargs = kwargs
        self.result: FollowResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = Operations(self.conns, CATALOGUE).follow(self.versions, **self.kwargs)
        except BaseException as exc:  # re-raised in the test's thread by finish()
            self.error = exc
        finally:
            self.conns.close()

    def finish(self) -> FollowResult:
        """Wait for the window to end on its own; re-raise what the follower raised."""
        self.join()  # it ends on its own after its window (pytest-timeout bounds a hang)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_for(
    what: str, check: Callable[[], bool], *, seconds: float = 60.0, alive: Callable[[], bool] = lambda: True
) -> None:
    """Poll ``check`` until it holds; fail if the deadline passes or the follower ended first."""
    deadline = time.monotonic() + seconds
    while not check():
        assert alive(), f"the follower ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {seconds} s"
        time.sleep(0.1)


def listeners(h: Harness) -> int:
    """Sessions of the test database LISTENing on the source's channel (their last statement)."""
    with h.source_engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = :listen"
                ),
                {"listen": LISTEN},
            ).scalar_one()
        )


def log_cursors(h: Harness) -> dict[str, LogCursor]:
    """The cursors as stored, straight from the source's ``etl_state.catalogue__feed_cursors``."""
    with h.state_engine.connect() as conn:
        rows = conn.execute(text("SELECT version, position FROM etl_state.catalogue__feed_cursors")).all()
    return {version: LogCursor.from_json(position) for version, position in rows}


class CursorWatch:
    """Every sample of the stored cursors, to prove none of them ever moved backwards."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.samples: list[dict[str, LogCursor]] = []

    def sample(self) -> dict[str, LogCursor]:
        found = log_cursors(self.h)
        self.samples.append(found)
        return found

    def assert_forward_only(self) -> None:
        last: dict[str, LogCursor] = {}
        for n, sample in enumerate(self.samples):
            assert last.keys() <= sample.keys(), f"sample {n}: a stored cursor disappeared"
            for version, cursor in sample.items():
                assert version not in last or cursor >= last[version], (
                    f"sample {n}: cursor of {version} went back from {last[version]} to {cursor}"
                )
            last = sample


def following(cursors: dict[str, LogCursor], versions: Sequence[Any]) -> bool:
    """Every version has finished its backfill and follows the log."""
    return all(v.key in cursors and not cursors[v.key].backfilling for v in versions)


def past(cursors: dict[str, LogCursor], versions: Sequence[Any], xid: int) -> bool:
    """Every version has been delivered transaction ``xid``: a batch whose snapshot sees it ended."""
    return all(delivered(cursors.get(v.key), xid) for v in versions)


def delivered(cursor: Any, xid: int) -> bool:
    return isinstance(cursor, LogCursor) and not cursor.backfilling and cursor.since.visible(xid)


def commit_marker(h: Harness, name: str) -> int:
    """Insert one product in a short transaction of its own; that transaction's id."""
    with h.source_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO products (sku, name, brand_id, price_cents, stock) "
                "VALUES ('MARK-' || nextval('products_id_seq'), :name, 1, 100, 1)"
            ),
            {"name": name},
        )
        return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())


def commit(h: Harness, sql: str) -> int:
    """One statement in a short transaction of its own; that transaction's id."""
    with h.source_engine.begin() as conn:
        conn.exec_driver_sql(sql)
        return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())


def readable(h: Harness, xid: int) -> bool:
    """A snapshot taken now sees ``xid``: a batch started now delivers its entries."""
    with h.source_engine.connect() as conn:
        snapshot = conn.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one()
        return Snapshot.parse(snapshot).visible(xid)


def catch_up(h: Harness, versions: Sequence[Any]) -> None:
    """Sync until the log is read to its end (commits may land while it syncs)."""
    deadline = time.monotonic() + 60
    sync(h, versions)
    while not nothing_pending(h, versions):
        assert time.monotonic() < deadline, "the log was still not read to its end"
        time.sleep(0.1)
        sync(h, versions)


def nothing_pending(h: Harness, versions: Sequence[Any]) -> bool:
    """Every version follows the log, and no entry is past the slowest (readable or not)."""
    stored = list(h.cursors.load(v.key for v in versions).values())
    if not all(isinstance(c, LogCursor) and not c.backfilling for c in stored):
        return False
    return not extractor(h).pending(lowest(stored))


def running(child: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: child.poll() is None


def in_parity(h: Harness, versions: Sequence[Any]) -> bool:
    return all(h.documents(v) == h.expected(v) for v in versions)


def differences(h: Harness, versions: Sequence[Any]) -> dict[str, dict[str, list[str]]]:
    """Per version, the ids missing from the index, extra in it, and with other content."""
    out = {}
    for v in versions:
        expected, actual = h.expected(v), h.documents(v)
        found = {
            "missing": sorted(expected.keys() - actual.keys(), key=int),
            "extra": sorted(actual.keys() - expected.keys(), key=int),
            "differ": sorted(
                (k for k in expected.keys() & actual.keys() if expected[k] != actual[k]), key=int
            ),
        }
        if any(found.values()):
            out[v.key] = found
    return out


def assert_exact_parity(h: Harness, versions: Sequence[Any]) -> None:
    """``assert_parity``, after a first look that names the ids that are wrong."""
    assert not differences(h, versions), differences(h, versions)
    assert_parity(h, *versions)


def some_changes(h: Harness, step: int) -> None:
    """Every kind of change, each in its own short transaction."""
    execute(
        h, "UPDATE products SET name = :n, stock = stock + 1 WHERE id = :id", n=f"updated {step}", id=step
    )
    execute(
        h,
        "INSERT INTO products (sku, name, brand_id, price_cents, stock) VALUES (:sku, :n, 2, 4321, 5)",
        sku=f"NEW-{step}",
        n=f"inserted {step}",
    )
    execute(h, "DELETE FROM products WHERE id = :id", id=step + 1)  # hard delete
    execute(h, "UPDATE products SET deleted_at = now() WHERE id = :id", id=step + 2)  # soft delete
    execute(h, "UPDATE brands SET name = :n, country = 'IS' WHERE id = 1", n=f"Brand renamed {step}")
    execute(h, "DELETE FROM product_categories WHERE product_id = :id", id=step + 3)
    execute(h, "UPDATE categories SET name = :n WHERE id = 2", n=f"Category renamed {step}")


class PausedSink:
    """A sink whose first write waits until ``release`` is set: a sync that has read a page and
    not written it yet, as a slow or descheduled follower is."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.paused = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, actions: Any) -> Any:
        if self.paused:
            self.paused = False
            assert self.release.wait(60), "never released"
        return self.inner.write(actions)


class Writer(threading.Thread):
    """Commits random short transactions (no long ones: the server and its bound are shared)."""

    def __init__(self, engine: Engine, seed: int, rate: float = 40.0) -> None:
        super().__init__(daemon=True)
        self.engine, self.seed, self.rate = engine, seed, rate
        self.stop = threading.Event()
        self.done: Counter[str] = Counter()

    def run(self) -> None:
        self.done.update(
            churn(self.engine, rate=self.rate, seconds=300, seed=self.seed, long_share=0.0, stop=self.stop)
        )

    def finish(self) -> Counter[str]:
        self.stop.set()
        self.join(60)
        assert not self.is_alive()
        return self.done


def cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m etl_core`` on the captured catalogue and this module's VERSIONS."""
    command = [
        sys.executable,
        "-m",
        "etl_core",
        "--source",
        "catalogue.source:CATALOGUE",
        "--versions",
        "tests.integration.test_follow:VERSIONS",
        *args,
    ]
    with log.open("ab") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)


def cli_env(h: Harness) -> dict[str, str]:
    url = h.source_engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k not in ("TRACKING_DATABASE_URL", "ETL_STATE_SCHEMA")}
    env.update(SOURCE_DATABASE_URL=url, STATE_DATABASE_URL=url, ETL_PAGE_SIZE="200")
    env[PREFIX_ENV] = h.prefix
    return env


def report(child: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The command's JSON report, once it has ended on its own."""
    out, _ = child.communicate()  # it ends on its own (pytest-timeout bounds a hang)
    assert child.returncode == 0, f"exit {child.returncode}: {log.read_text()[-3000:]}"
    return dict(orjson.loads(out.decode().strip().splitlines()[-1]))


# -- the tests -------------------------------------------------------------------------------------


def test_a_follower_picks_up_every_kind_of_change_without_a_new_command(
    h: Harness, settings: Settings
) -> None:
    generate(h.source_engine, rows=300, seed=81)
    versions = h.versions
    assert [v.index for v in prefixed(h.prefix)] == [v.index for v in versions]
    follower = Follower(h, settings, versions, window_s=12)
    follower.start()
    try:
        wait_for("it LISTENed", lambda: listeners(h) == 1, alive=follower.is_alive)
        wait_for("the backfill", lambda: following(log_cursors(h), versions), alive=follower.is_alive)
        assert in_parity(h, versions)

        some_changes(h, 10)  # inserts, updates, hard and soft deletes, a brand and a category rename
        execute(h, "INSERT INTO product_categories VALUES (20, 4), (21, 4) ON CONFLICT DO NOTHING")
        wait_for("the changes to be indexed", lambda: in_parity(h, versions), alive=follower.is_alive)
        docs = h.documents(versions[0])
        assert docs["10"]["name"] == "updated 10" and "11" not in docs and "12" not in docs
        assert "Brand renamed 10" in {d["brand"] for d in docs.values()}
    finally:
        result = follower.finish()
    assert result.wakeups >= 1, result
    assert result.syncs >= 2 and result.indexed > 0, result
    wait_for("its LISTEN connection to close", lambda: listeners(h) == 0)
    assert_exact_parity(h, versions)


def test_kill_9_of_a_follower_process_resumes_without_loss(h: Harness, tmp_path: Path) -> None:
    generate(h.source_engine, rows=2000, seed=82)
    versions = h.versions
    env, log = cli_env(h), tmp_path / "followers.log"
    watch = CursorWatch(h)
    writer = Writer(h.source_engine, seed=82)
    children: list[subprocess.Popen[bytes]] = []
    try:
        first = cli(["follow", "--seconds", "120"], env, log)
        children.append(first)
        alive = running(first)
        wait_for("it LISTENed", lambda: listeners(h) == 1, alive=alive)
        writer.start()  # changes committed continuously from here on, in short transactions
        wait_for("the backfill", lambda: following(watch.sample(), versions), alive=alive)
        marker = commit_marker(h, "before the kill")
        wait_for("the marker to be read", lambda: past(watch.sample(), versions, marker), alive=alive)
        assert len(h.documents(versions[0])) > 1000  # indexed: the backfill and the log since
        before_kill = watch.sample()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(60) == -signal.SIGKILL

        some_changes(h, 100)  # more changes while no follower runs; the writer goes on too
        after_kill = watch.sample()
        assert all(after_kill[k] >= before_kill[k] for k in before_kill), (before_kill, after_kill)

        second = cli(["follow", "--seconds", "10"], env, log)
        children.append(second)
        marker = commit_marker(h, "after the kill")
        wait_for("the second marker", lambda: past(watch.sample(), versions, marker), alive=running(second))
        done = writer.finish()
        followed = report(second, log)
    finally:
        if writer.is_alive():
            writer.finish()
        for child in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(60)
    assert followed["syncs"] >= 1 and followed["indexed"] > 0, followed
    assert done["hard_delete"] + done["insert"] + done["update"] > 0, done

    # The window may end before everything the writer committed last was readable (another
    # session on the shared server can hold the bound back): a plain sync via the CLI finishes.
    deadline = time.monotonic() + 60
    while not nothing_pending(h, versions):
        assert time.monotonic() < deadline, "the log was still not read to its end"
        report(cli(["sync"], env, log), log)
        watch.sample()
    final = watch.sample()
    watch.assert_forward_only()
    assert all(final[k] > before_kill[k] for k in before_kill), (before_kill, final)
    assert_exact_parity(h, versions)
    print(f"kill -9 resumed: writer {dict(done)}; cursors {before_kill} -> {final}")


def test_a_second_follower_of_a_lane_refuses_while_the_first_runs(h: Harness, settings: Settings) -> None:
    """One writer per version (etl_core.state.lanes): a second follower, or any sync of the same
    versions, fails at once with LaneBusy naming the version and the holder's backend, and runs
    once the first has ended (or been killed: its connection, and so its lock, is gone)."""
    generate(h.source_engine, rows=300, seed=83)
    versions = h.versions
    first = Follower(h, settings, versions, window_s=6, idle_s=1.0)
    first.start()
    try:
        wait_for("the first to LISTEN", lambda: listeners(h) == 1, alive=first.is_alive)
        second = Follower(h, settings, versions, window_s=1, idle_s=1.0)
        second.start()
        second.join(30)
        assert isinstance(second.error, LaneBusy), second.error
        assert re.search(
            r"version 'v1' is being synced by another process \(PostgreSQL backend pid \d+\)",
            str(second.error),
        )
        with pytest.raises(LaneBusy):
            sync(h, versions[:1])  # a plain sync of one of its versions refuses too
    finally:
        result = first.finish()
    assert result.syncs >= 1
    third = Follower(h, settings, versions, window_s=1, idle_s=0.5)
    third.start()
    assert third.finish().syncs >= 1  # the lock went with the first follower
    assert_exact_parity(h, versions)


def test_without_the_lock_every_delete_is_sent_so_an_older_write_cannot_undo_it(h: Harness) -> None:
    """The race the lock exists for, run on purpose with two unlocked syncs (``exclusive=False``).

    B reads a restored product and is descheduled before its write; the product is deleted; A
    reads the delete and, not being the only writer, sends it even though the index has no such
    document yet: the versioned delete leaves a tombstone, and B's older write is refused (409,
    stale). With pruning (the locked, exclusive path) that delete would have been skipped."""
    generate(h.source_engine, rows=50, seed=85)
    versions = h.versions
    catch_up(h, versions)
    execute(h, "UPDATE products SET deleted_at = now() WHERE id = 5")
    catch_up(h, versions)
    assert "5" not in h.documents(versions[0])
    restored = commit(h, "UPDATE products SET deleted_at = NULL WHERE id = 5")
    wait_for("the restore to be readable", lambda: readable(h, restored))

    read = threading.Event()

    class Reading(Extractor[Any]):
        def run(self, what: str, stmt: Any, params: dict[str, Any] | None = None) -> Any:
            rows = super().run(what, stmt, params)
            if what == "log page":
                read.set()
            return rows

    def unlocked(extractor: Extractor[Any], sink: Any) -> SyncResult:
        return core_sync(
            versions, extractor=extractor, sink=sink, dead_letters=h.dead_letters, cursors=h.cursors
        )

    paused = PausedSink(h.sink)
    outcome: dict[str, SyncResult] = {}
    b = threading.Thread(
        target=lambda: outcome.update(b=unlocked(Reading(h.source_engine, h.source, page_size=200), paused)),
        daemon=True,
    )
    b.start()
    try:
        assert read.wait(60), "B never read the log"
        deleted = commit(h, "DELETE FROM products WHERE id = 5")
        wait_for("the delete to be readable", lambda: readable(h, deleted))
        a = unlocked(extractor(h), h.sink)
        assert all(delivered(t.cursor, deleted) for t in a.versions.values())
    finally:
        paused.release.set()
        b.join(60)
    assert not b.is_alive() and "b" in outcome
    assert outcome["b"].versions["v1"].stale >= 1  # the tombstone refused B's older write
    catch_up(h, versions)
    assert_exact_parity(h, versions)


def test_without_notify_a_follower_polls_and_a_prepared_transaction_works(
    h: Harness, settings: Settings
) -> None:
    generate(h.source_engine, rows=300, seed=84)
    versions = h.versions

    # With NOTIFY in the triggers PostgreSQL refuses two-phase commit on a tracked table...
    with h.source_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("UPDATE products SET stock = stock + 1 WHERE id = 1")
        with pytest.raises(DBAPIError, match="NOTIFY"):
            conn.exec_driver_sql(f"PREPARE TRANSACTION 'etl_refused_{h.prefix}'")
        conn.exec_driver_sql("ROLLBACK")
    # ... so a user on two-phase commit tracks without it, and followers poll.
    dataclasses.replace(TRACKING, notify=False).apply(h.source_engine)
    sync(h, versions)

    follower = Follower(h, settings, versions, window_s=10, idle_s=0.5)
    follower.start()
    try:
        wait_for("it LISTENed", lambda: listeners(h) == 1, alive=follower.is_alive)
        some_changes(h, 30)
        prepared = f"etl_follow_{h.source_engine.url.database}"
        with h.source_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("UPDATE products SET name = 'prepared' WHERE id = 40")
            conn.exec_driver_sql(f"PREPARE TRANSACTION '{prepared}'")
            conn.exec_driver_sql(f"COMMIT PREPARED '{prepared}'")  # at once: the server is shared
        wait_for("the changes to be polled", lambda: in_parity(h, versions), alive=follower.is_alive)
        docs = h.documents(versions[0])
        assert docs["40"]["name"] == "prepared" and docs["30"]["name"] == "updated 30" and "31" not in docs
    finally:
        result = follower.finish()
    assert result.wakeups == 0, result  # nothing notified: the changes came by polling
    assert result.polls >= 1 and result.syncs >= 2 and result.indexed > 0, result
    assert_exact_parity(h, versions)


def test_the_command_line_syncs_then_trims_what_every_version_has_read(h: Harness, tmp_path: Path) -> None:
    generate(h.source_engine, rows=300, seed=87)
    env, log = cli_env(h), tmp_path / "cli.log"
    versions = prefixed(h.prefix)  # what the command's --versions resolves to in its process
    first = report(cli(["sync"], env, log), log)
    assert all(v["indexed"] > 0 for v in first["versions"].values())
    execute(h, "UPDATE products SET price_cents = price_cents + 1 WHERE id <= 50")
    execute(h, "DELETE FROM products WHERE id = 60")
    before = log_size(h)
    assert before > 0
    synced = report(cli(["sync"], env, log), log)
    assert synced["log_trimmed"] == before and log_size(h) == 0  # the sync trims, as Dagster's does
    assert report(cli(["trim"], env, log), log)["trimmed"] == 0  # nothing left for the command
    assert_exact_parity(h, versions)


def test_a_trim_with_a_shorter_declaration_keeps_what_another_version_has_not_read(
    h: Harness, settings: Settings
) -> None:
    """A command line run with ``--versions`` naming v1 alone (or an old release beside a new
    one): its trim must not delete what v2 and v3, synced by another door, have not read yet."""
    generate(h.source_engine, rows=120, seed=88)
    versions = prefixed(h.prefix)
    h.sync(versions)
    conns = connections(h, settings)
    try:
        narrow = Operations(conns, CATALOGUE, versions[:1])
        narrow.trim()  # what the generation logged, read by all
        assert log_size(h) == 0
        execute(h, "UPDATE products SET stock = stock + 1 WHERE id <= 10")
        h.sync(versions[:1])  # only v1 reads the change
        assert narrow.trim() == 0 and log_size(h) == 1  # v2 and v3 have cursors, and lag
        h.sync(versions)
        assert narrow.trim() > 0 and log_size(h) == 0  # read by all: gone
    finally:
        conns.close()
    assert_exact_parity(h, versions)


def log_size(h: Harness) -> int:
    with h.source_engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM etl_state.catalogue_changes").scalar_one())


def test_kill_9_in_the_middle_of_a_batch_resumes_that_batch_without_loss(h: Harness, tmp_path: Path) -> None:
    """A command-line sync is killed while a batch of 6 000 keys is half delivered (its stored
    cursor is in that batch); the next sync finishes the batch from its last key, with the same
    snapshot, then reads what came after: exact parity, and only the page in flight read twice."""
    generate(h.source_engine, rows=6000, seed=89)
    env, log = cli_env(h), tmp_path / "cli.log"
    env["ETL_PAGE_SIZE"] = "50"  # 120 pages: long enough to land the kill inside the batch
    versions = prefixed(h.prefix)
    report(cli(["sync"], env, log), log)
    execute(h, "UPDATE products SET stock = stock + 1")  # one entry, 6 000 keys: one batch
    child = cli(["sync"], env, log)
    deadline = time.monotonic() + 120

    def in_batch() -> LogCursor | None:
        found = log_cursors(h).get(versions[0].key)
        return found if found is not None and found.batch is not None and int(found.key or 0) >= 500 else None

    while (cut := in_batch()) is None:
        assert child.poll() is None, "the sync finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL
    stored = log_cursors(h)
    cut = stored[versions[0].key]
    assert cut.batch is not None and all(c.batch == cut.batch for c in stored.values())
    execute(h, "UPDATE products SET name = 'after the kill' WHERE id = 1")  # after that batch
    resumed = report(cli(["sync"], env, log), log)
    left = 6000 - int(cut.key or 0)
    assert resumed["rows_read"] == left + 1  # the rest of that batch, then id 1: nothing re-walked
    assert_exact_parity(h, versions)
