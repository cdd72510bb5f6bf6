"""The engine on real services (PostgreSQL 15, OpenSearch 3.3 or 2.19), compared document by document."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, text

from catalogue.generate import generate
from catalogue.source import CATALOGUE, Product
from catalogue.versions import V1, V2, V3
from etl_core import IndexVersion, OpenSearchSink, SinkUnavailable, make_client
from etl_core.errors import ConfigError
from etl_core.flow.route import route
from etl_core.model.cursor import Cursor, Position
from etl_core.model.records import Action, Outcome, Watermark
from etl_core.read.extract import Extractor
from etl_core.settings import make_engine
from etl_core.write.load import load
from tests.integration.harness import FAST_BACKOFF, Harness

pytestmark = pytest.mark.integration


def execute(h: Harness, sql: str, **params: object) -> None:
    with h.source_engine.begin() as conn:
        conn.execute(text(sql), params)


def behind_capture(h: Harness, sql: str) -> None:
    """Run ``sql`` with change capture switched off: what reconciliation exists for (a restore, a
    bulk fix run with triggers disabled)."""
    tables = ("products", "brands", "categories", "product_categories")
    with h.source_engine.begin() as conn:
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.exec_driver_sql(sql)
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def assert_parity(h: Harness, *versions: IndexVersion[Product]) -> int:
    compared = 0
    for v in versions:
        expected, actual = h.expected(v), h.documents(v)
        assert actual.keys() == expected.keys(), f"{v.key}: ids differ"
        diff = [k for k in expected if expected[k] != actual[k]]
        assert not diff, f"{v.key}: documents differ, first keys {diff[:5]}"
        compared += len(expected)
    print(f"parity: {compared} documents compared")
    return compared


def test_one_select_per_page_whether_the_lane_holds_1_3_or_5_versions(h: Harness) -> None:
    generate(h.source_engine, rows=1000, seed=1)
    h.page_size = 150
    lanes = {
        1: [h.version(V1, "a1")],
        3: [h.version(V1, "b1"), h.version(V2, "b2"), h.version(V3, "b3")],
        5: [
            h.version(V1, "c1"),
            h.version(V2, "c2"),
            h.version(V3, "c3"),
            h.version(V1, "c4"),
            h.version(V2, "c5"),
        ],
    }
    seen = {}
    for n, versions in lanes.items():
        h.statements.clear()
        result = h.sync(versions)
        assert result.rows_read == 1000
        seen[n] = (len(h.statements), result.pages)
    pages = math.ceil(1000 / 150)  # 7: the last one short, so no empty probe follows
    # the snapshot, the backfill pages, then one log page that finds nothing committed since; the
    # hand-over is a page (a checkpoint) that needs no statement, the empty batch one that ends
    # at its snapshot
    assert seen[1] == seen[3] == seen[5] == (1 + pages + 1, pages + 2)


def test_every_version_equals_its_transform_of_the_source(h: Harness) -> None:
    generate(h.source_engine, rows=800, seed=2)
    execute(h, "UPDATE products SET deleted_at = now() WHERE id % 17 = 0")
    execute(h, "UPDATE products SET stock = 0 WHERE id % 5 = 0")
    execute(h, "UPDATE brands SET name = name || ' Renamed' WHERE id = 1")
    versions = h.versions
    h.sync(versions)
    # incremental changes after the first sync, then sync again
    execute(h, "UPDATE products SET price_cents = price_cents + 1, stock = 7 WHERE id % 10 = 3")
    execute(h, "DELETE FROM product_categories WHERE product_id % 9 = 0")
    execute(
        h,
        "INSERT INTO products (sku, name, brand_id, price_cents, stock) "
        "VALUES ('NEW-1', 'Fresh arrival', 2, 1234, 3)",
    )
    h.sync(versions)
    compared = assert_parity(h, *versions)
    assert compared > 1500
    v3_docs = h.documents(versions[2])
    assert "5" not in v3_docs and "3" in v3_docs  # the predicate holds in the index


def test_cursors_never_move_backwards_and_a_replayed_page_changes_nothing(h: Harness) -> None:
    generate(h.source_engine, rows=300, seed=3)
    versions = h.versions
    # keep the pages as they were read before any update: the "old pages" we will replay
    reader = h.extractor()
    old_pages = list(reader.changes(dict.fromkeys(v.key for v in versions), reader.watermark()))
    first = h.sync(versions)
    execute(h, "UPDATE products SET name = name || ' v2', stock = stock + 1 WHERE id <= 40")
    second = h.sync(versions)
    for v in versions:
        was, now = first.versions[v.key].cursor, second.versions[v.key].cursor
        assert was is not None and now is not None and now > was
    # an older cursor offered to the store is ignored
    stale: dict[str, Position] = {}
    for v in versions:
        cursor = first.versions[v.key].cursor
        assert cursor is not None
        stale[v.key] = cursor
    h.cursors.save(stale)
    assert h.cursors.load(v.key for v in versions) == {v.key: second.versions[v.key].cursor for v in versions}

    before = {v.key: (h.documents(v), h.versions_of(v)) for v in versions}
    replay = route(versions, dict.fromkeys(v.key for v in versions), CATALOGUE.record_to_json)
    outcomes = []
    for routed in load(h.sink, CATALOGUE.record_to_json)(replay(iter(old_pages))):
        outcomes += [(b.version, b.stale) for b in routed.batches.values()]
    stale_total = sum(s for _, s in outcomes)
    assert stale_total >= 40 * 2  # at least the 40 updated rows were refused in v1 and v2
    after = {v.key: (h.documents(v), h.versions_of(v)) for v in versions}
    assert after == before
    assert_parity(h, *versions)


def test_a_document_one_mapping_rejects_is_a_dead_letter_of_that_version_only(h: Harness) -> None:
    generate(h.source_engine, rows=200, seed=4)
    execute(h, "UPDATE products SET stock = 40000 WHERE id = 17")  # v2 maps stock as short
    execute(h, "UPDATE products SET name = NULL WHERE id = 18")  # no version can index it
    v1, v2, v3 = versions = h.versions
    result = h.sync(versions)
    letters = {(d["version"], d["key"]): d for d in h.dead_letters.open_letters()}
    assert set(letters) == {("v2", "17"), ("v1", "18"), ("v2", "18"), ("v3", "18")}
    assert "mapper_parsing_exception" in letters[("v2", "17")]["reason"]
    assert letters[("v2", "17")]["payload"]["stock"] == 40000
    assert letters[("v1", "18")]["reason"].startswith("transform: MissingField: name is NULL")
    assert "17" in h.documents(v1) and "17" in h.documents(v3) and "17" not in h.documents(v2)
    # every cursor moved past both bad rows, through the whole source, to the log
    cursors = {t.cursor for t in result.versions.values()}
    assert result.caught_up and len(cursors) == 1 and not cursors.pop().backfilling  # type: ignore[union-attr]
    assert result.versions["v2"].dead_letters == 2
    # the same failure again bumps attempts instead of adding a row
    execute(h, "UPDATE products SET stock = 40001 WHERE id = 17")
    h.sync(versions)
    again = [d for d in h.dead_letters.open_letters("v2") if d["key"] == "17"]
    assert len(again) == 1 and again[0]["attempts"] == 2 and again[0]["payload"]["stock"] == 40001
    assert_parity(h, v1, v3)


def test_soft_deletes_remove_the_document_from_every_version(h: Harness) -> None:
    generate(h.source_engine, rows=150, seed=5)
    versions = h.versions
    h.sync(versions)
    ids = [3, 50, 149]
    for v in versions:
        docs = h.documents(v)
        assert any(str(i) in docs for i in ids)
    execute(h, "UPDATE products SET deleted_at = now() WHERE id = ANY(:ids)", ids=ids)
    result = h.sync(versions)
    for v in versions:
        docs = h.documents(v)
        assert not any(str(i) in docs for i in ids)
        assert result.versions[v.key].deleted == 3
    assert_parity(h, *versions)


def test_a_transaction_committing_below_the_cursor_is_picked_up_next_time(by_column: Harness) -> None:
    """Change-column mode. The long transaction stamps its row at its start, then commits after a
    later change was synced. Bounded by the high watermark the row is found; bounded by now() it
    is lost. (With change capture the same race is tests/integration/test_log_bound.py's.)"""
    h = by_column
    generate(h.source_engine, rows=100, seed=6)
    safe = h.version(V1, "safe")
    naive = h.version(V1, "naive")
    h.sync([safe, naive])

    class NaiveExtractor(Extractor[Product]):
        """What a sync bounded by now() would do: the control that shows the race is real."""

        def watermark(self) -> Watermark:
            wm = super().watermark()
            return Watermark(below=wm.now, now=wm.now)

    long_tx = h.source_engine.connect()
    tx = long_tx.begin()
    long_tx.execute(text("UPDATE products SET name = 'late writer' WHERE id = 10"))
    stamped = long_tx.execute(text("SELECT updated_at FROM products WHERE id = 10")).scalar_one()
    time.sleep(0.05)
    execute(h, "UPDATE products SET name = 'early writer' WHERE id = 20")
    during_safe = h.sync([safe])
    during_naive = h.sync([naive], extractor=NaiveExtractor(h.source_engine, h.source, page_size=50))
    naive_at, safe_at = during_naive.versions["naive"].cursor, during_safe.versions["safe"].cursor
    assert isinstance(naive_at, Cursor) and isinstance(safe_at, Cursor)
    assert naive_at.changed_at > stamped  # passed the open row
    assert safe_at.changed_at < stamped  # waited below it
    tx.commit()
    long_tx.close()

    h.sync([safe])
    h.sync([naive], extractor=NaiveExtractor(h.source_engine, h.source, page_size=50))
    assert h.documents(safe)["10"]["name"] == "late writer"
    assert h.documents(safe)["20"]["name"] == "early writer"
    assert h.documents(naive)["10"]["name"] != "late writer"  # the lost update we prevent
    assert_parity(h, safe)


def test_change_column_mode_refuses_a_role_that_cannot_see_other_transactions(
    by_column: Harness, admin_engine: Engine
) -> None:
    """Its watermark is only safe when the role sees every session's transaction start: without
    pg_read_all_stats the sync fails at its first statement with the grant to make, moving
    nothing; with the grant it syncs."""
    h = by_column
    generate(h.source_engine, rows=50, seed=8)
    role = f"column_reader_{h.source_engine.url.database}"
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'")
    reader = make_engine(h.source_engine.url.set(username=role, password="reader-pw"))
    try:
        with h.source_engine.begin() as conn:
            conn.exec_driver_sql(
                f"GRANT SELECT ON products, brands, categories, product_categories TO {role}"
            )
        version = h.version(V1)
        with pytest.raises(ConfigError, match=r"'updated_at'.*GRANT pg_read_all_stats TO the sync role"):
            h.sync([version], extractor=Extractor(reader, h.source, page_size=50))
        assert h.cursors.load([version.key])[version.key] is None
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f"GRANT pg_read_all_stats TO {role}")
        reader.dispose()  # new sessions carry the new membership
        h.sync([version], extractor=Extractor(reader, h.source, page_size=50))
        assert_parity(h, version)
    finally:
        reader.dispose()
        with h.source_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")


def test_sessions_run_without_jit(h: Harness) -> None:
    """A page statement's cost estimate on a large table passes jit_above_cost, and compiling it
    cost 15 times the page's own work at a million rows: the engine's sessions switch JIT off,
    and stay outside any transaction after doing so."""
    with h.source_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar_one() == "off"
        conn.rollback()
        raw = conn.connection.driver_connection
        assert raw is not None and not raw.autocommit


def test_an_unreachable_opensearch_fails_the_sync_and_moves_no_cursor(h: Harness) -> None:
    generate(h.source_engine, rows=500, seed=7)
    h.page_size = 100
    versions = [h.version(V1), h.version(V2)]
    dead = OpenSearchSink(
        make_client("http://127.0.0.1:9"), backoff=FAST_BACKOFF, describe="OpenSearch at http://127.0.0.1:9"
    )

    with pytest.raises(
        SinkUnavailable,
        match=r"OpenSearch at http://127\.0\.0\.1:9 could not be reached while checking whether index "
        r".* exists \(3 attempts: connection refused\).*no cursor was moved",
    ):
        h.sync(versions, sink=dead)
    assert h.cursors.load(v.key for v in versions) == {"v1": None, "v2": None}

    class DiesAfterFirstPage:
        """The real sink for the first page, then the node is gone."""

        def __init__(self) -> None:
            self.writes = 0

        def __getattr__(self, name: str) -> object:
            return getattr(h.sink, name)

        def write(self, actions: Sequence[Action]) -> list[Outcome]:
            self.writes += 1
            return (h.sink if self.writes == 1 else dead).write(actions)

    first_page: dict[str, Position] = {}
    with pytest.raises(SinkUnavailable):
        h.sync(versions, sink=DiesAfterFirstPage(), on_page=lambda p: first_page.setdefault("last", p.last))
    assert h.cursors.load(v.key for v in versions) == dict.fromkeys(["v1", "v2"], first_page["last"])

    result = h.sync(versions)  # the node is back: resume from page one's end and finish
    assert result.rows_read == 400
    assert_parity(h, *versions)


def test_backfill_settings_are_restored_when_the_version_has_caught_up(h: Harness) -> None:
    generate(h.source_engine, rows=300, seed=8)
    v1 = h.version(V1)
    h.page_size = 100
    h.sync([v1], max_pages=1)
    settings = h.client.indices.get_settings(index=v1.index)[v1.index]["settings"]["index"]
    assert settings["refresh_interval"] == "-1" and settings["number_of_replicas"] == "0"
    result = h.sync([v1])
    assert result.caught_up
    settings = h.client.indices.get_settings(index=v1.index)[v1.index]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"
    assert h.sink.ensure_index(v1) is False  # idempotent
    assert_parity(h, v1)


def test_what_a_sync_wrote_is_searchable_when_it_returns_through_one_refresh_of_the_indices_it_wrote(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searchable on return without waiting for the periodic refresh (switched off here), and one
    ``_refresh`` request for every index the sync wrote to, none for a sync that wrote nothing."""
    generate(h.source_engine, rows=50, seed=4)
    v1, v2 = h.version(V1), h.version(V2)
    h.sync([v1, v2])
    for v in (v1, v2):  # only an explicit refresh makes a write searchable from now on
        h.client.indices.put_settings(index=v.index, body={"index": {"refresh_interval": "-1"}})
    refreshed: list[str] = []
    refresh = h.client.indices.refresh

    def counted(*args: object, **kwargs: object) -> object:
        refreshed.append(str(kwargs.get("index")))
        return refresh(*args, **kwargs)

    monkeypatch.setattr(h.client.indices, "refresh", counted)
    with h.source_engine.connect() as conn:
        key = conn.execute(text("SELECT min(id) FROM products WHERE deleted_at IS NULL")).scalar_one()
    execute(h, "UPDATE products SET name = 'Searchable at once' WHERE id = :key", key=key)
    result = h.sync([v1, v2])
    assert result.versions["v1"].indexed == 1 and result.versions["v2"].indexed == 1
    assert refreshed == [f"{v1.index},{v2.index}"]
    for v in (v1, v2):
        hits = h.client.search(index=v.index, body={"query": {"query_string": {"query": "searchable"}}})
        assert [hit["_id"] for hit in hits["hits"]["hits"]] == [str(key)]
    h.sync([v1, v2])  # nothing changed: nothing to refresh
    assert refreshed == [f"{v1.index},{v2.index}"]
