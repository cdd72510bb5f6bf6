"""Nothing open on the server stalls what has committed: the change log is read in snapshot deltas.

The reader that came before read the log below ``pg_snapshot_xmin``, which is server-wide: one
session idle in transaction in any database froze every source while lag read 0. Each case here
holds a transaction open (in another database, in the same one, with or without writing, FOR
UPDATE, prepared), commits other changes, and proves on the real services that the next sync
delivers them to every version while it stays open, that lag is honest meanwhile (non-zero while
committed changes wait, zero once they are delivered), and that what the open transaction wrote
is delivered when it commits, with exact parity.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import TupleRow
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from catalogue.generate import generate
from catalogue.source import TRACKING
from etl_core.errors import SinkUnavailable, SourceRefused
from etl_core.model.cursor import LogCursor
from etl_core.model.records import Lag, Outcome
from etl_core.model.snapshot import Snapshot
from etl_core.operations.steps import Operations
from etl_core.operations.validation import Thresholds, log_upkeep
from etl_core.settings import Settings
from etl_core.write.sink import OpenSearchSink
from tests.conftest import fresh_database
from tests.integration.harness import Harness
from tests.integration.test_follow import connections
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[TupleRow]


def connect(url: URL) -> Conn:
    return psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        application_name="test_stalls_holder",
    )


@pytest.fixture
def other_database(settings: Settings, admin_engine: Engine) -> Iterator[URL]:
    with fresh_database(admin_engine, "o") as name:
        yield settings.source_url.set(database=name)


@contextmanager
def holding(url: URL, *statements: str) -> Iterator[Conn]:
    """A session that runs ``statements`` in one transaction and then stays idle in it; rolled
    back on the way out unless the body committed it."""
    conn = connect(url)
    try:
        for statement in statements:
            conn.execute(statement)
        held = conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()
        assert held is not None and held[0] is not None, "the holder must hold a transaction id"
        yield conn
    finally:
        conn.rollback()
        conn.close()


def source_url(h: Harness) -> URL:
    return h.source_engine.url


def lag(h: Harness, versions: list[Any]) -> Lag:
    return h.extractor().lag(h.cursors.load(v.key for v in versions))


def names(h: Harness, versions: list[Any], key: str) -> set[str]:
    """The product name document ``key`` carries in each version holding it (v2 and v3 call it
    ``title``; v3 holds products in stock only)."""
    found = set()
    for v in versions:
        doc = h.documents(v).get(key)
        if doc is not None:
            found.add(doc.get("name", doc.get("title")))
    return found


HOLDERS = {
    "another database, idle after a write": ("other", ["CREATE TABLE t (i int)", "INSERT INTO t VALUES (1)"]),
    "another database, an xid and no write": ("other", ["SELECT pg_current_xact_id()"]),
    "the same database, an xid and no write": ("same", ["SELECT pg_current_xact_id()"]),
    "the same database, FOR UPDATE": ("same", ["SELECT id FROM products WHERE id = 1 FOR UPDATE"]),
}


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_an_open_transaction_anywhere_on_the_server_holds_back_nothing_committed(
    h: Harness, other_database: URL, holder: str
) -> None:
    where, statements = HOLDERS[holder]
    generate(h.source_engine, rows=300, seed=91)
    versions = h.versions
    h.sync(versions)
    assert all(n == 0 for n in lag(h, versions).rows_behind.values())
    with holding(other_database if where == "other" else source_url(h), *statements) as held:
        execute(h, "UPDATE products SET name = 'committed while another waits' WHERE id = 7")
        waiting = lag(h, versions)
        assert all(waiting.rows_behind[v.key] == 1 for v in versions), waiting
        assert all(waiting.seconds[v.key] != 0.0 for v in versions), waiting  # 0 only when none waits
        named = {(t["kind"], t["id"]) for t in waiting.open_transactions}
        # what may still arrive is named: a session of the source's database, by pid; one in
        # another database cannot write this source's tables, so it is not
        assert (("session", str(held.info.backend_pid)) in named) == (where == "same"), named
        result = h.sync(versions)
        assert result.rows_read == 1 and result.caught_up
        assert names(h, versions, "7") == {"committed while another waits"}
        after = lag(h, versions)
        assert after.rows_behind == dict.fromkeys(after.rows_behind, 0)
        assert after.seconds == dict.fromkeys(after.seconds, 0.0)
    assert_parity(h, *versions)


def test_a_writer_idle_in_the_same_database_is_delivered_when_it_commits(h: Harness) -> None:
    """The open writer's own change waits for its commit (it is not committed); the commits
    that land after it do not wait for it, and its change arrives once it commits, last."""
    generate(h.source_engine, rows=300, seed=92)
    versions = h.versions
    h.sync(versions)
    with holding(
        source_url(h), "UPDATE products SET name = 'written first, committed last' WHERE id = 10"
    ) as w:
        execute(h, "UPDATE products SET name = 'written second, committed first' WHERE id = 11")
        h.sync(versions)
        assert names(h, versions, "11") == {"written second, committed first"}
        assert "written first, committed last" not in names(h, versions, "10")
        assert all(n == 0 for n in lag(h, versions).rows_behind.values())  # nothing committed waits
        w.commit()
    assert all(n == 1 for n in lag(h, versions).rows_behind.values())
    before = {v.key: h.versions_of(v) for v in versions}
    h.sync(versions)
    assert names(h, versions, "10") == {"written first, committed last"}
    assert_parity(h, *versions)
    for v in versions:  # external versions only grow: the late commit's is above the early one's
        after = h.versions_of(v)
        assert all(after[k] >= n for k, n in before[v.key].items() if k in after)
        if "10" in after and "11" in after:
            assert after["10"] > after["11"]


def test_a_first_walk_with_a_long_transaction_open_across_its_hand_over_loses_nothing(h: Harness) -> None:
    generate(h.source_engine, rows=600, seed=93)
    versions = h.versions
    with holding(source_url(h), "UPDATE products SET name = 'open across the hand-over' WHERE id = 20") as w:
        first = h.sync(versions)  # walks, hands over at its snapshot, which sees 20's writer open
        assert first.caught_up and all(
            isinstance(t.cursor, LogCursor) and not t.cursor.backfilling for t in first.versions.values()
        )
        execute(h, "UPDATE products SET name = 'after the walk' WHERE id = 21")
        h.sync(versions)
        assert names(h, versions, "21") == {"after the walk"}
        w.commit()
    h.sync(versions)
    assert names(h, versions, "20") == {"open across the hand-over"}
    assert_parity(h, *versions)


def test_the_same_keys_changed_by_many_statements_are_written_once_per_batch(h: Harness) -> None:
    generate(h.source_engine, rows=1000, seed=94)
    v1 = h.versions[0]
    h.sync([v1])
    for n in range(16):
        execute(h, f"UPDATE products SET stock = stock + 1, name = 'round {n}' WHERE id <= 400")
    result = h.sync([v1])
    assert result.rows_read == 400
    assert result.versions["v1"].indexed == 400
    assert names(h, [v1], "400") == {"round 15"}
    assert_parity(h, v1)


class FailingAfter(OpenSearchSink):
    """Acknowledges ``writes`` bulk requests, then is unreachable: a run killed mid-batch."""

    def __init__(self, inner: OpenSearchSink, writes: int) -> None:
        super().__init__(inner.client, backoff=inner.backoff)
        self.left = writes

    def write(self, actions: Any) -> list[Outcome]:
        if self.left <= 0:
            raise SinkUnavailable("test: OpenSearch went away")
        self.left -= 1
        return super().write(actions)


def test_a_batch_cut_short_resumes_at_its_last_key_with_the_same_snapshot(h: Harness) -> None:
    generate(h.source_engine, rows=1000, seed=95)
    v1 = h.versions[0]
    h.sync([v1])
    execute(h, "UPDATE products SET stock = stock + 7 WHERE id % 2 = 0")  # 500 keys: 5 pages of 100
    h.page_size = 100
    with pytest.raises(SinkUnavailable):
        h.sync([v1], sink=FailingAfter(h.sink, writes=2), in_flight=1)
    stored = h.cursors.load(["v1"])["v1"]
    assert isinstance(stored, LogCursor) and stored.batch is not None and stored.key == 400
    execute(h, "UPDATE products SET name = 'after the cut' WHERE id = 3")  # not in that batch
    resumed = h.sync([v1])
    assert resumed.rows_read == 300 + 1  # the batch's 3 pages left, then a batch with key 3
    assert names(h, [v1], "3") == {"after the cut"}
    assert_parity(h, v1)


def test_a_parent_change_reaching_many_documents_is_paged_by_documents(h: Harness) -> None:
    generate(h.source_engine, rows=5000, seed=96)
    execute(h, "UPDATE products SET brand_id = 1 WHERE id <= 4500")
    versions = h.versions[:2]
    h.sync(versions)
    execute(h, "UPDATE brands SET name = 'Everyone''s brand' WHERE id = 1")  # one log entry
    sizes: list[int] = []
    result = h.sync(versions, on_page=lambda p: sizes.append(p.rows))
    with h.source_engine.connect() as conn:
        reached = conn.exec_driver_sql("SELECT count(*) FROM products WHERE brand_id = 1").scalar_one()
    assert reached >= 4500 and result.rows_read == reached
    assert max(sizes) <= h.page_size and len([s for s in sizes if s]) == -(-reached // h.page_size)
    assert_parity(h, *versions)


def test_sync_before_tracking_apply_says_to_apply_it(h: Harness) -> None:
    generate(h.source_engine, rows=50, seed=98)
    TRACKING.remove(h.source_engine, force=True)
    with pytest.raises(SourceRefused, match=r"catalogue_changes .*does not exist.* tracking apply"):
        h.sync(h.versions)


def test_the_log_upkeep_is_reported_and_warns_past_its_threshold(h: Harness) -> None:
    """A version never synced holds the log: status shows its size and oldest entry, and the
    non-gating check warns once it passes the threshold."""
    generate(h.source_engine, rows=300, seed=99)
    v1, v2 = h.versions[:2]
    h.sync([v1])
    execute(h, "UPDATE products SET stock = stock + 1 WHERE id <= 100")
    assert h.extractor().trim(list(h.cursors.load([v1.key, v2.key]).values())) == 0  # v2 holds it
    upkeep = lag(h, [v1, v2]).log
    assert upkeep is not None and upkeep["bytes"] > 0 and upkeep["oldest_entry_age_s"] is not None
    tight = log_upkeep(upkeep, Thresholds(max_log_mb=1, max_log_age_s=1))
    time.sleep(1.1)
    late = log_upkeep(lag(h, [v1, v2]).log or {}, Thresholds(max_log_mb=1, max_log_age_s=1))
    assert tight.name == "change_log_within_threshold" and not tight.gates
    assert not late.passed and "sync or retire" in late.description
    assert log_upkeep(upkeep, Thresholds()).passed


def test_a_truncate_is_captured_and_the_lane_reconciled_at_once(h: Harness, settings: Settings) -> None:
    """TRUNCATE names no key: the batch that delivers it tells the sync, and the command line's
    and Dagster's sync (``Operations.sync``) reconcile the lane at once, still holding its lock."""
    generate(h.source_engine, rows=300, seed=97)
    conns = connections(h, settings)
    try:
        versions = h.versions
        Operations(conns, h.source).sync(versions)
        execute(h, "TRUNCATE product_categories")  # every product loses its categories
        execute(h, "UPDATE products SET name = 'after the truncate' WHERE id = 5")
        result = Operations(conns, h.source).sync(versions)
        assert result.truncated == ("product_categories",)
        assert_parity(h, *versions)
        execute(h, "DELETE FROM product_categories")  # nothing left to delete: no entry
        execute(h, "TRUNCATE products CASCADE")  # every document goes
        result = Operations(conns, h.source).sync(versions)
        assert set(result.truncated) == {"products", "product_categories"}
        assert all(h.documents(v) == {} for v in versions)
        assert_parity(h, *versions)
    finally:
        conns.close()


def test_an_upgraded_deployment_goes_on_from_the_old_readers_cursor(h: Harness) -> None:
    """The reader before kept ``(phase, xid, seq)`` of the last entry read in
    ``<source>_log_cursors``: it is read once as a snapshot that sees every xid below it, so the
    upgrade re-walks nothing and loses nothing; at most the last transaction read comes again."""
    generate(h.source_engine, rows=300, seed=100)
    v1 = h.versions[0]
    h.sync([v1])
    execute(h, "UPDATE products SET stock = stock + 1 WHERE id = 9")  # the last one read
    h.sync([v1])
    with h.state_engine.begin() as conn:
        xid, seq = conn.exec_driver_sql(
            "SELECT xid, seq FROM etl_state.catalogue_changes ORDER BY xid DESC, seq DESC LIMIT 1"
        ).one()
        conn.exec_driver_sql("DELETE FROM etl_state.catalogue__feed_cursors")
        conn.exec_driver_sql(
            "CREATE TABLE etl_state.catalogue_log_cursors"
            " (version text PRIMARY KEY, phase int, major jsonb, minor bigint)"
        )
        conn.exec_driver_sql(f"INSERT INTO etl_state.catalogue_log_cursors VALUES ('v1', 1, '{xid}', {seq})")
    assert h.cursors.load(["v1"])["v1"] == LogCursor.done(Snapshot.below(xid))
    execute(h, "UPDATE products SET name = 'after the upgrade' WHERE id IN (3, 4)")
    result = h.sync([v1])
    assert result.rows_read == 1 + 2  # 9 again (its transaction), then 3 and 4: no walk
    assert names(h, [v1], "3") == {"after the upgrade"}
    with h.state_engine.connect() as conn:  # the next position lives in the new table
        assert (
            conn.exec_driver_sql("SELECT count(*) FROM etl_state.catalogue__feed_cursors").scalar_one() == 1
        )
    assert_parity(h, v1)
