"""Poison pills: rows that once stopped a sync, wasted work, or left the books wrong.

Each case runs on the real node (some behind the loopback proxy, which can count ``_bulk``
requests and refuse large bodies the way a reverse proxy or a hosted cluster does) and ends in an
exact comparison of every document, with the dead letters accounted for.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearchWarning
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.source import Product
from catalogue.versions import V1, V2, V3
from etl_core import ConfigError, IndexVersion, OpenSearchSink, make_client
from etl_core.operations.reconcile import reconcile
from etl_core.operations.validation import validate
from etl_core.settings import Settings
from tests.faults.hostile import hostile_rows, insert_hostile
from tests.faults.proxy import FaultProxy
from tests.integration.harness import FAST_BACKOFF, Harness
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(harness: Harness, settings: Settings) -> Iterator[tuple[Harness, FaultProxy]]:
    """The harness with its sink behind the counting proxy."""
    with FaultProxy(settings.opensearch_url) as proxy:
        client = make_client(proxy.url)
        harness.sink = OpenSearchSink(client, backoff=FAST_BACKOFF)
        try:
            yield harness, proxy
        finally:
            client.close()


def letters_of(h: Harness) -> dict[tuple[str, str], str]:
    return {(d["version"], d["key"]): d["reason"] for d in h.dead_letters.open_letters()}


def assert_parity_except(h: Harness, versions: list[IndexVersion[Product]]) -> int:
    """Every document equals its transform, and every missing one has an open letter saying why."""
    letters = letters_of(h)
    live = {str(r.id) for r in h.source_records() if r.deleted_at is None}
    compared = 0
    for v in versions:
        expected, actual = h.expected(v), h.documents(v)
        lettered = {k for (ver, k) in letters if ver == v.key}
        assert actual == {k: d for k, d in expected.items() if k not in lettered}, v.key
        assert lettered <= live, (v.key, lettered - live)  # no letter for a row that is not there
        compared += len(actual)
    return compared


def test_a_document_past_the_nodes_request_limit_is_a_dead_letter_not_a_stuck_lane(
    harness: Harness,
) -> None:
    """101 MB of text in one row: the real node answers 413 (http.max_content_length is 100 MB).
    Before the fix the sync died with an uncaught TransportError, moved no cursor, and every
    later sync died on the same row."""
    h = harness
    generate(h.source_engine, rows=200, seed=61)
    execute(h, "UPDATE products SET stock = 3, description = repeat('x', 101 * 1024 * 1024) WHERE id = 50")
    versions = h.versions
    result = h.sync(versions)
    letters = letters_of(h)
    # v1 and v2 carry the description; v3 does not, so it indexes the row
    assert {k for k in letters if k[1] == "50"} == {("v1", "50"), ("v2", "50")}
    for v in ("v1", "v2"):
        assert "413" in letters[(v, "50")] and "too large" in letters[(v, "50")]
        assert "the node's http.max_content_length is 100mb" in letters[(v, "50")]  # size and limit
        size = int(re.search(r"is (\d+) bytes", letters[(v, "50")]).group(1))  # type: ignore[union-attr]
        assert size > 101 * 1024 * 1024
    # the letter keeps a preview of the 101 MB text and its length, not the text (replay re-reads)
    for letter in h.dead_letters.open_letters():
        description = letter["payload"]["description"]
        assert description.startswith("x" * 1024) and description.endswith(
            f"… [{101 * 1024 * 1024} characters; cut in the dead letter]"
        )
    cursors = {t.cursor for t in result.versions.values()}  # all through the source, to the log
    assert result.caught_up and len(cursors) == 1 and not cursors.pop().backfilling  # type: ignore[union-attr]
    execute(h, "UPDATE products SET description = 'fits now' WHERE id = 50")
    h.sync(versions)  # the next sync proceeds, and the fixed row resolves its letters
    assert not letters_of(h)
    assert_parity(h, *versions)


def test_bulk_max_bytes_bounds_every_request_and_a_proxy_413_splits_down_to_the_culprit(
    proxied: tuple[Harness, FaultProxy],
) -> None:
    h, proxy = proxied
    h.sink.max_chunk_bytes = 64 * 1024
    proxy.max_body_bytes = 256 * 1024  # a reverse proxy in front of the cluster
    generate(h.source_engine, rows=400, seed=62)
    execute(h, "UPDATE products SET description = repeat('m', 100 * 1024) WHERE id = 10")  # alone: fits
    execute(h, "UPDATE products SET description = repeat('l', 300 * 1024) WHERE id = 20")  # past the proxy
    versions = [h.version(V1), h.version(V3)]
    h.sync(versions)
    multi = [(size, ops) for size, ops in proxy.bulks if sum(ops.values()) > 1]
    assert multi and all(size <= 64 * 1024 for size, _ in multi), max(size for size, _ in multi)
    letters = letters_of(h)
    assert set(letters) == {("v1", "20")}  # v3 has no description
    assert "413" in letters[("v1", "20")] and "bytes" in letters[("v1", "20")]
    assert "a proxy in front of it may allow less" in letters[("v1", "20")]
    assert len(h.documents(versions[0])["10"]["description"]) == 100 * 1024
    assert assert_parity_except(h, versions) > 0


def test_a_predicate_version_sends_no_delete_for_rows_it_never_held(
    proxied: tuple[Harness, FaultProxy],
) -> None:
    h, proxy = proxied
    generate(h.source_engine, rows=1000, seed=63)
    execute(h, "UPDATE products SET stock = 0 WHERE id % 5 <> 0")  # v3 keeps one row in five
    v3 = h.version(V3)
    first = h.sync([v3])
    sent = sum(ops["delete"] for _, ops in proxy.bulks)
    assert (sent, first.versions["v3"].deleted, first.versions["v3"].not_found) == (0, 0, 800)
    # incremental: 300 rejected rows change again, and 20 kept rows leave the predicate
    proxy.bulks.clear()
    execute(h, "UPDATE products SET price_cents = price_cents + 1 WHERE id % 5 <> 0 AND id <= 375")
    execute(h, "UPDATE products SET stock = 0 WHERE id % 5 = 0 AND id <= 100")
    second = h.sync([v3])
    sent = sum(ops["delete"] for _, ops in proxy.bulks)
    print(f"v3 deletes sent: first sync 0 of 800 rejected, incremental {sent} of {300 + 20} rejected")
    assert (sent, second.versions["v3"].deleted, second.versions["v3"].not_found) == (20, 20, 300)
    assert_parity(h, v3)


def test_fresher_data_resolves_the_letter_and_unblocks_validation(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=300, seed=64)
    execute(h, "UPDATE products SET stock = 70000 WHERE id = 12")  # v2's short refuses it
    v2 = h.version(V2)
    h.sync([v2])
    assert set(letters_of(h)) == {("v2", "12")}
    execute(h, "UPDATE products SET stock = 7 WHERE id = 12")
    h.sync([v2])
    assert not letters_of(h)
    report = validate(
        v2, extractor=h.extractor(), sink=h.sink, dead_letters=h.dead_letters, cursors=h.cursors
    )
    assert report.passed, report.failures()


def test_reconcile_leaves_dead_lettered_keys_to_their_letters_and_records_a_repeat_failure(
    proxied: tuple[Harness, FaultProxy],
) -> None:
    h, proxy = proxied
    generate(h.source_engine, rows=300, seed=65)
    execute(h, "UPDATE products SET stock = 70000 WHERE id = 12")
    v2 = h.version(V2)
    h.sync([v2])
    # a document altered behind the pipeline's back, whose source row v2 now refuses
    h.client.index(index=v2.index, id="30", body={"sku": "tampered"}, refresh=True)
    with h.source_engine.begin() as conn:  # behind change capture's back: only reconcile sees it
        conn.execute(text("ALTER TABLE products DISABLE TRIGGER etl_track_catalogue_upd"))
        conn.execute(text("UPDATE products SET stock = 90000 WHERE id = 30"))
        conn.execute(text("ALTER TABLE products ENABLE TRIGGER etl_track_catalogue_upd"))
    proxy.bulks.clear()
    drift = reconcile([v2], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)["v2"]
    assert drift.counts["missing"] == 0 and drift.dead_lettered == 1
    assert drift.counts["different"] == 1 and drift.repaired == 0
    assert sum(ops["index"] for _, ops in proxy.bulks) == 1  # key 30 only: 12 is not re-sent
    letters = letters_of(h)
    assert set(letters) == {("v2", "12"), ("v2", "30")}
    assert "mapper_parsing_exception" in letters[("v2", "30")]
    # a second pass counts both as dead-lettered and sends nothing
    proxy.bulks.clear()
    again = reconcile([v2], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)["v2"]
    assert (again.dead_lettered, again.differences, proxy.bulks) == (2, 0, [])


def test_reconcile_letters_a_row_that_no_longer_transforms(harness: Harness) -> None:
    """A row changed where no sync saw it, so that its transform now fails: a report names it
    (untransformable) and writes nothing; a repair records its letter, once."""
    h = harness
    generate(h.source_engine, rows=120, seed=67)
    v1 = h.version(V1)
    h.sync([v1])
    with h.source_engine.begin() as conn:  # behind change capture's back
        conn.execute(text("ALTER TABLE products DISABLE TRIGGER etl_track_catalogue_upd"))
        conn.execute(text("UPDATE products SET name = NULL WHERE id = 7"))
        conn.execute(text("ALTER TABLE products ENABLE TRIGGER etl_track_catalogue_upd"))
    report = reconcile([v1], h.extractor(), h.sink, repair=False, dead_letters=h.dead_letters)["v1"]
    assert report.untransformable == 1 and letters_of(h) == {}
    reconcile([v1], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)
    letters = letters_of(h)
    assert set(letters) == {("v1", "7")} and "name is NULL in product 7" in letters[("v1", "7")]
    reconcile([v1], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)
    [letter] = h.dead_letters.open_letters("v1")
    assert letter["attempts"] == 1  # a nightly repair does not count the same failure again


def test_a_refused_version_leaves_no_index_of_the_others_behind(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=50, seed=66)
    v1, v2 = h.version(V1), h.version(V2)
    broken = IndexVersion(
        "v9",
        f"{h.prefix}_v9",
        V1.transform,
        settings={"analysis": {"analyzer": {"x": {"type": "custom", "tokenizer": "no_such_tokenizer"}}}},
    )
    with pytest.raises(ConfigError, match=r"version 'v9': OpenSearch refused index .*no_such_tokenizer"):
        h.sync([v1, v2, broken])
    assert not h.client.indices.exists(index=f"{v1.index},{v2.index},{broken.index}", allow_no_indices=True)
    assert h.cursors.load(["v1", "v2", "v9"]) == dict.fromkeys(["v1", "v2", "v9"])
    h.sync([v1, v2])  # the fixed declaration starts clean
    assert_parity(h, v1, v2)


def test_reconciliation_does_not_sort_on_id(harness: Harness) -> None:
    """OpenSearch 2.19 and 3.x warn that fielddata on ``_id`` is deprecated; opensearch-py turns
    the response's Warning header into an OpenSearchWarning."""
    h = harness
    generate(h.source_engine, rows=2500, seed=67)
    execute(h, "DELETE FROM products WHERE id % 100 = 0")
    v1 = h.version(V1)
    h.sync([v1])
    h.client.index(index=v1.index, id="999999", body={"sku": "orphan"}, refresh=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drift = reconcile([v1], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)["v1"]
    assert [str(w.message) for w in caught if issubclass(w.category, OpenSearchWarning)] == []
    assert drift.indexed == len(h.expected(v1)) + 1 and drift.counts["orphan"] == 1
    assert_parity(h, v1)


def test_hostile_rows_reach_every_version_exactly_or_become_letters_of_the_versions_they_break(
    proxied: tuple[Harness, FaultProxy],
) -> None:
    h, proxy = proxied
    h.sink.max_chunk_bytes = 512 * 1024
    proxy.max_body_bytes = 2 * 1024 * 1024
    generate(h.source_engine, rows=100, seed=68)
    rows = insert_hostile(h.source_engine, list(hostile_rows(past_limit_bytes=3 * 1024 * 1024)))
    versions = h.versions
    h.sync(versions)
    expected_letters = {(v, doc_id) for doc_id, r in rows.items() for v in r.breaks}
    assert set(letters_of(h)) == expected_letters
    compared = assert_parity_except(h, versions)
    # and again after every hostile row changed: same books, nothing stuck
    execute(h, "UPDATE products SET price_cents = 1 WHERE sku LIKE 'HOSTILE-%'")
    h.sync(versions)
    assert set(letters_of(h)) == expected_letters
    assert assert_parity_except(h, versions) == compared
    print(f"hostile rows: {len(rows)}, documents compared {compared}, letters {len(expected_letters)}")
