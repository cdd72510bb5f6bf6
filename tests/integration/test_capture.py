"""Change capture end to end on the real services: the generated log, not a change column.

Nothing stamps or rewrites a product row: every change the sync sees comes from the generated
tracking (the demo schema installs it from ``catalogue.source.TRACKING``). Every case ends in
an exact comparison of every document of every version with its transform of the source, and
none of them runs reconciliation.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, text

from catalogue.generate import churn, generate
from catalogue.source import CATALOGUE, TRACKING
from catalogue.versions import V1
from etl_core.flow.pipeline import SyncResult
from etl_core.model.cursor import LogCursor
from etl_core.read import log_feed
from etl_core.read.extract import Extractor
from etl_core.settings import make_engine
from tests.integration.harness import FAST_BACKOFF, Harness
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration


def extractor(h: Harness, engine: Engine | None = None, **kw: Any) -> Extractor[Any]:
    kw.setdefault("page_size", h.page_size)
    return Extractor(engine or h.source_engine, CATALOGUE, backoff=FAST_BACKOFF, **kw)


def sync(h: Harness, versions: Sequence[Any], **kw: Any) -> SyncResult:
    kw.setdefault("extractor", extractor(h))
    return h.sync(versions, **kw)


def log_entries(h: Harness) -> int:
    with h.source_engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM etl_state.catalogue_changes")).scalar_one())


def test_every_kind_of_change_reaches_every_version_with_a_statement_per_page(h: Harness) -> None:
    generate(h.source_engine, rows=1000, seed=71)
    versions = h.versions
    h.statements.clear()
    first = sync(h, versions)
    statements = [" ".join(s.split()[:4]) for s in h.statements]
    backfill_pages = 5  # 1000 rows by 200, the last one full: one empty probe follows
    # one snapshot, the backfill pages and the probe, then one log page that finds nothing
    assert len(statements) == 1 + backfill_pages + 1 + 1, statements
    assert_parity(h, *versions)
    assert all(isinstance(t.cursor, LogCursor) and not t.cursor.backfilling for t in first.versions.values())

    execute(h, "UPDATE products SET price_cents = price_cents + 1, stock = 0 WHERE id % 10 = 3")
    execute(h, "UPDATE products SET deleted_at = now() WHERE id % 17 = 0")  # soft deletes
    execute(h, "DELETE FROM products WHERE id % 23 = 0")  # hard deletes: no reconcile needed
    execute(h, "UPDATE brands SET name = name || ' Renamed', country = 'IS' WHERE id IN (1, 2)")
    execute(h, "UPDATE categories SET name = 'Renamed ' || name WHERE id = 3")
    execute(h, "DELETE FROM product_categories WHERE product_id % 9 = 0")
    execute(
        h,
        "INSERT INTO product_categories SELECT id, 4 FROM products WHERE id % 11 = 0 ON CONFLICT DO NOTHING",
    )
    execute(
        h,
        "INSERT INTO products (sku, name, brand_id, price_cents, stock) "
        "VALUES ('NEW-1', 'Fresh arrival', 2, 1234, 3)",
    )
    h.statements.clear()
    second = sync(h, versions)
    # the snapshot, one statement per log page, and one that resolves the root keys after the
    # batch's first page (test_a_long_batch_resolves_its_root_keys_once_for_many_pages)
    assert 200 < second.rows_read < 200 * 51 and len(h.statements) == 1 + second.pages + 1, h.statements
    assert_parity(h, *versions)
    gone = h.documents(versions[0])
    assert "23" not in gone and "46" not in gone
    assert all(t.cursor > first.versions[k].cursor for k, t in second.versions.items())  # type: ignore[operator]


def test_a_parent_rename_rewrites_no_root_row_and_every_version_follows(h: Harness) -> None:
    generate(h.source_engine, rows=50_000, seed=72)
    execute(h, "UPDATE products SET brand_id = 1")
    versions = h.versions
    h.page_size = 2000
    sync(h, versions)

    def write(sql: str) -> int:
        """Run ``sql`` in its own transaction, then read ``products``' updated-row counter with
        the writer's pending statistics flushed (PG15 flushes a backend's counts when idle)."""
        with h.source_engine.connect() as conn:
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            conn.commit()
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            n = conn.exec_driver_sql(
                "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'products'::regclass"
            ).scalar_one()
            conn.commit()
            return int(n)

    before, entries = write("SELECT 1"), log_entries(h)
    assert before >= 50_000  # the re-parenting above is counted: the counter is live
    assert write("UPDATE brands SET name = 'Renamed Brand' WHERE id = 1") == before  # no product row
    assert log_entries(h) == entries + 1  # one entry for 50 000 documents
    assert write("SELECT 1") == before
    result = sync(h, versions)
    assert result.versions["v1"].indexed == 50_000
    assert {d["brand"] for d in h.documents(versions[0]).values()} == {"Renamed Brand"}
    assert_parity(h, *versions)
    assert write("UPDATE products SET stock = stock WHERE id <= 10") == before + 10  # it would see one


def test_a_long_batch_resolves_its_root_keys_once_for_many_pages(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A category rename reaching more products than a page: the batch's first page resolves its
    keys together with their rows; after it the keys are resolved three pages' worth at a time
    and each page reads only its rows by key, so no page pays for the rest of the batch. A batch
    that ends on a full statement of keys finds its end with one more, empty."""
    monkeypatch.setattr(log_feed, "PAGES_OF_KEYS", 3)
    generate(h.source_engine, rows=3000, seed=76)
    execute(  # category 4 reaches exactly 200 products: its batch ends on a full statement of keys
        h,
        "DELETE FROM product_categories WHERE category_id = 4 AND product_id NOT IN ("
        "SELECT product_id FROM product_categories WHERE category_id = 4 ORDER BY product_id LIMIT 200)",
    )
    versions = h.versions
    h.page_size = 50
    sync(h, versions)
    with h.source_engine.connect() as conn:
        reached = [
            int(
                conn.execute(
                    text(f"SELECT count(*) FROM product_categories WHERE category_id = {c}")
                ).scalar_one()
            )
            for c in (3, 4)
        ]
    for category, fan_out in zip((3, 4), reached, strict=True):
        execute(h, f"UPDATE categories SET name = 'Renamed {category}' WHERE id = {category}")
        h.statements.clear()
        result = sync(h, versions)
        statements = list(h.statements)
        assert result.rows_read == fan_out >= 200
        assert_parity(h, *versions)
        names = [d["categories"] for d in h.documents(versions[0]).values()]
        assert sum(f"Renamed {category}" in n for n in names) == fan_out
        rest = fan_out - 50  # after the first page
        assert (rest % 150 == 0) == (category == 4)
        keys_statements = rest // 150 + 1  # the last one short, or empty after a full one
        pages = 1 + math.ceil(rest / 50) + (rest % 150 == 0)  # with the batch's end
        assert result.pages == pages, result.pages
        resolving = [s for s in statements if "roots AS" in s]
        assert len(resolving) == 1 + keys_statements, [" ".join(s.split()[:6]) for s in statements]
        empty = rest % 150 == 0  # the page that ends the batch holds no key: no statement of its own
        assert len(statements) == 1 + pages - empty + keys_statements  # the snapshot, pages, keys
    # cut after the last page of keys, before the empty page that ends category 4's batch: the
    # lane stands in the batch, not caught up, and the next sync only finds the batch's end
    execute(h, "UPDATE categories SET name = 'Renamed again' WHERE id = 4")
    cut = sync(h, versions, max_pages=1 + 150 // 50)
    assert not cut.caught_up and cut.rows_read == reached[1]
    assert all(isinstance(t.cursor, LogCursor) and t.cursor.batch is not None for t in cut.versions.values())
    end = sync(h, versions)  # one page ends the batch, one finds the next batch empty
    assert end.caught_up and end.rows_read == 0 and end.pages == 2
    assert all(isinstance(t.cursor, LogCursor) and t.cursor.batch is None for t in end.versions.values())
    assert_parity(h, *versions)
    execute(
        h,
        "DELETE FROM products WHERE id IN (SELECT product_id FROM product_categories WHERE category_id = 3)",
    )
    assert sync(h, versions).rows_read == reached[0]
    assert_parity(h, *versions)  # hard deletes, read by key from a later statement of keys


def test_churn_with_hard_deletes_parents_links_and_long_transactions_keeps_exact_parity(h: Harness) -> None:
    """Three rounds of churn, each with syncs racing the writers (long transactions commit after
    later ones, across a sync), then one sync once the writers are done: after that sync every
    version of every round matches the source exactly, without reconciliation."""
    generate(h.source_engine, rows=2000, seed=73)
    versions = h.versions
    sync(h, versions)
    done: Counter[str] = Counter()
    for round_ in range(3):
        stop = threading.Event()
        writer = threading.Thread(
            target=lambda r=round_, s=stop: done.update(
                churn(
                    h.source_engine, rate=60, seconds=60, seed=9 + r, long_share=0.15, long_max_s=1.5, stop=s
                )
            )
        )
        writer.start()
        try:
            deadline = time.monotonic() + 4  # how much churn a round makes, not a bound on speed
            while time.monotonic() < deadline:  # syncs race the writers and long transactions
                sync(h, versions)
        finally:
            stop.set()
            writer.join()
        sync(h, versions)
        compared = assert_parity(h, *versions)
        print(f"round {round_}: {compared} documents compared, {dict(done)}")
    for op in (
        "insert",
        "update",
        "hard_delete",
        "soft_delete",
        "rename_brand",
        "rename_category",
        "recategorise",
        "uncategorise",
        "long_transactions",
    ):
        assert done[op] > 0, (op, done)


def test_trimming_keeps_every_entry_a_lagging_version_has_not_read(h: Harness) -> None:
    """The log is trimmed only below the slowest version: a version that has not synced the
    latest changes still finds them, and a version with no position yet holds everything."""
    generate(h.source_engine, rows=300, seed=74)
    v1, v2 = h.versions[0], h.versions[1]
    sync(h, [v1, v2])
    trimmer = extractor(h)

    def trim_all() -> int:
        return trimmer.trim(list(h.cursors.load([v1.key, v2.key]).values()))

    trim_all()
    assert log_entries(h) == 0

    execute(h, "UPDATE products SET price_cents = price_cents + 7 WHERE id <= 40")
    execute(h, "DELETE FROM products WHERE id = 41")
    entries = log_entries(h)  # one per statement: the update, the delete and the delete's cascade
    assert entries == 3
    sync(h, [v1])  # v2 lags behind
    assert trim_all() == 0 and log_entries(h) == entries
    assert trimmer.trim([h.cursors.load([v1.key])[v1.key], None]) == 0  # a version not begun holds all

    execute(h, "UPDATE brands SET name = name || ' II' WHERE id = 1")
    sync(h, [v1])
    assert trim_all() == 0  # v2 still has read none of them
    sync(h, [v2])
    assert_parity(h, v1, v2)  # v2 caught up from the untrimmed log: the delete and the rename
    assert trim_all() == entries + 1 and log_entries(h) == 0


def test_changes_during_a_backfill_are_handed_over_to_the_log(h: Harness) -> None:
    generate(h.source_engine, rows=1000, seed=74)
    v1 = h.version(V1)

    class Meddling(Extractor[Any]):
        """Commits changes right after the second backfill page is read: behind the walk (keys
        already read), ahead of it, hard deletes on both sides, and a parent."""

        def run(self, what: str, stmt: Any, params: dict[str, Any] | None = None) -> Any:
            rows = super().run(what, stmt, params)
            if what == "backfill page" and self.statements == 3:  # the bound, page 1, page 2
                execute(h, "UPDATE products SET name = 'changed behind' WHERE id IN (5, 150)")
                execute(h, "UPDATE products SET name = 'changed ahead' WHERE id = 900")
                execute(h, "DELETE FROM products WHERE id IN (7, 950)")
                execute(h, "UPDATE brands SET name = 'Brand during backfill' WHERE id = 2")
            return rows

    meddling = Meddling(h.source_engine, CATALOGUE, page_size=200, backoff=FAST_BACKOFF)
    result = sync(h, [v1], extractor=meddling)
    totals = result.versions["v1"]  # 7 had been indexed; 950, ahead of the walk, never was
    assert result.caught_up and (totals.deleted, totals.not_found) == (1, 1)
    assert assert_parity(h, v1) == 998  # in the same run: the log took over where the walk ended
    assert h.documents(v1)["5"]["name"] == "changed behind"


def test_a_select_only_role_and_a_prepared_transaction_lose_nothing(h: Harness, admin_engine: Engine) -> None:
    """Two-phase commit needs tracking without NOTIFY (PostgreSQL refuses to PREPARE a transaction
    that notified). A prepared transaction outlives its session; what commits after it is
    delivered at once, and its own entry when COMMIT PREPARED makes it visible."""
    dataclasses.replace(TRACKING, notify=False).apply(h.source_engine)
    generate(h.source_engine, rows=300, seed=75)
    database = h.source_engine.url.database
    role = f"reader_{database}"
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'")
    try:
        with h.source_engine.begin() as conn:
            conn.exec_driver_sql(
                f"GRANT SELECT ON products, brands, categories, product_categories TO {role}"
            )
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA etl_state TO {role}")
            conn.exec_driver_sql(f"GRANT SELECT ON etl_state.catalogue_changes TO {role}")
        reader = make_engine(h.source_engine.url.set(username=role, password="reader-pw"))
        versions = h.versions
        try:
            sync(h, versions, extractor=extractor(h, reader))
            prepared = f"etl_test_{database}"
            with h.source_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql("UPDATE products SET name = 'prepared' WHERE id = 10")
                conn.exec_driver_sql(f"PREPARE TRANSACTION '{prepared}'")
            try:
                execute(h, "UPDATE products SET name = 'after the prepared one' WHERE id = 11")
                sync(h, versions, extractor=extractor(h, reader))  # 11 does not wait for it
                assert h.documents(versions[0])["11"]["name"] == "after the prepared one"
                assert h.documents(versions[0])["10"]["name"] != "prepared"
                waiting = extractor(h, reader).lag(h.cursors.load(v.key for v in versions))
                assert all(n == 0 for n in waiting.rows_behind.values())  # nothing committed waits
                # what may still arrive is named, by its gid, for the unprivileged role too
                named = {(t["kind"], t["id"]) for t in waiting.open_transactions}
                assert ("prepared", prepared) in named
            finally:
                with h.source_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(f"COMMIT PREPARED '{prepared}'")
            sync(h, versions, extractor=extractor(h, reader))
            assert h.documents(versions[0])["10"]["name"] == "prepared"
            assert_parity(h, *versions)
        finally:
            reader.dispose()
    finally:
        with h.source_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")
