"""The stages and the composed pipeline, with in-memory fakes (no services)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from etl_core import SinkUnavailable, sync
from etl_core.flow.pipeline import compose
from etl_core.flow.route import route_page
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Cursor, external_version
from etl_core.model.records import Page
from etl_core.read.column_feed import normalise
from etl_core.retry import Backoff, call_with_retry
from tests.unit.fakes import ListExtractor, MemoryCursorStore, MemoryDeadLetters, MemorySink, at
from tests.unit.models import SOURCE, Item, version

ROWS = [
    (1, "one", 3, at(1), None),
    (2, "two", 0, at(2), None),
    (3, None, 1, at(3), None),  # NULL name: the transform refuses it
    (4, "four", 5, at(4), at(4)),  # soft-deleted
    (5, "five", 2, at(5), None),
]


def page_of(rows: list[tuple[Any, ...]]) -> Page[Item]:
    return next(normalise(SOURCE, iter([rows])))


def test_normalise_builds_frozen_records_with_positions() -> None:
    page = page_of(ROWS)
    assert [c.position for c in page.changes] == [Cursor(at(i), i) for i in range(1, 6)]
    assert [c.deleted for c in page.changes] == [False, False, False, True, False]
    record = page.changes[0].record
    assert record == Item(1, "one", 3, at(1), None)
    with pytest.raises(AttributeError):
        record.qty = 9  # type: ignore[misc]


def test_route_filters_by_each_versions_own_cursor_and_predicate() -> None:
    v1 = version("v1")
    stocked = version("v3", predicate=lambda i: i.qty > 0)
    routed = route_page(
        page_of(ROWS), [v1, stocked], {"v1": Cursor(at(2), 2), "v3": None}, SOURCE.record_to_json
    )
    b1, b3 = routed.batches["v1"], routed.batches["v3"]
    assert [(a.id, a.op) for a in b1.actions] == [("4", "delete"), ("5", "index")]
    assert [d.key for d in b1.dead_letters] == ["3"]
    # v3 starts from zero: out of stock (2) becomes a delete, as does the soft-deleted row (4)
    assert [(a.id, a.op) for a in b3.actions] == [
        ("1", "index"),
        ("2", "delete"),
        ("4", "delete"),
        ("5", "index"),
    ]
    assert b3.dead_letters[0].reason == "transform: ValueError: name is required"
    assert b3.dead_letters[0].payload == {"id": 3, "name": None, "qty": 1, "changed": at(3), "gone": None}
    first = b3.actions[0]
    assert first.body is not None and orjson.loads(first.body) == {"name": "one", "qty": 3}
    assert first.external_version == external_version(at(1))


def test_a_version_built_in_sql_takes_its_document_and_predicate_from_the_row() -> None:
    """The page's rows carry the lane's SQL-built columns (normalise keeps what follows the
    fields); a SQL-built version frames them as they are, a Python one beside it transforms."""
    built_sql = version("v9", document_sql=lambda c: c.doc, predicate_sql=lambda c: c.qty > 0)
    python = version("v1")
    built = BuiltColumns.of([python, built_sql])
    assert [label for label, _, _ in built.expressions] == ["etl_doc_v9", "etl_wants_v9"]
    documents = [b'{"n":1}', b'{"n":2}', None, b'{"n":4}', b'{"n":5}']
    wanted = [True, False, True, True, True]
    page = page_of([(*row, d, w) for row, d, w in zip(ROWS, documents, wanted, strict=True)])
    assert page.changes[0].record == Item(1, "one", 3, at(1), None)  # the built columns stay apart

    routed = route_page(page, [python, built_sql], {"v1": None, "v9": None}, SOURCE.record_to_json, built)

    b9 = routed.batches["v9"]
    assert [(a.id, a.op, a.body) for a in b9.actions] == [
        ("1", "index", b'{"n":1}'),  # PostgreSQL's bytes, not re-serialised
        ("2", "delete", None),  # its SQL predicate is false
        ("4", "delete", None),  # soft-deleted: no document whatever SQL built
        ("5", "index", b'{"n":5}'),
    ]
    assert [(d.key, d.reason) for d in b9.dead_letters] == [
        ("3", "document_sql: PostgreSQL built no document (NULL) for this row")
    ]
    assert [(a.id, a.op) for a in routed.batches["v1"].actions] == [
        ("1", "index"),
        ("2", "index"),
        ("4", "delete"),
        ("5", "index"),
    ]


def test_pipeline_reads_each_page_once_for_all_versions() -> None:
    versions = [version(f"v{i}") for i in range(1, 6)]
    counts = {}
    for n in (1, 3, 5):
        ext = ListExtractor(SOURCE, ROWS, page_size=2)
        result = sync(
            versions[:n],
            extractor=ext,
            sink=MemorySink(),
            dead_letters=MemoryDeadLetters(),
            cursors=MemoryCursorStore(),
        )
        counts[n] = (ext.statements, result.rows_read, result.pages)
    assert counts[1] == counts[3] == counts[5] == (1 + 3, 5, 3)


def test_pipeline_end_state_and_dead_letters() -> None:
    sink, letters, store = MemorySink(reject={("v2", "5")}), MemoryDeadLetters(), MemoryCursorStore()
    result = sync(
        [version("v1"), version("v2")],
        extractor=ListExtractor(SOURCE, ROWS),
        sink=sink,
        dead_letters=letters,
        cursors=store,
    )
    assert set(sink.docs["items_v1"]) == {"1", "2", "5"}
    assert set(sink.docs["items_v2"]) == {"1", "2"}
    assert sorted((d.version, d.key) for d in letters.letters) == [("v1", "3"), ("v2", "3"), ("v2", "5")]
    rejected = next(d for d in letters.letters if d.key == "5")
    assert rejected.payload is not None and rejected.payload["name"] == "five"
    assert rejected.changed_at == at(5)
    # dead letters count as handled: both cursors reach the last row
    assert store.cursors == {"v1": Cursor(at(5), 5), "v2": Cursor(at(5), 5)}
    assert result.versions["v2"].dead_letters == 2 and result.versions["v1"].indexed == 3
    assert sink.finished == ["v1", "v2"]


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_a_failing_sink_leaves_cursors_at_the_last_acknowledged_page(in_flight: int) -> None:
    """With later pages' writes on their way too, none moves a cursor past the failed one."""
    sink, store = MemorySink(fail_on_write=2), MemoryCursorStore()
    with pytest.raises(SinkUnavailable):
        sync(
            [version("v1")],
            extractor=ListExtractor(SOURCE, ROWS, page_size=2),
            sink=sink,
            dead_letters=MemoryDeadLetters(),
            cursors=store,
            in_flight=in_flight,
        )
    assert store.cursors == {"v1": Cursor(at(2), 2)}
    assert sink.finished == []
    # the next run resumes after page one and completes
    sync(
        [version("v1")],
        extractor=ListExtractor(SOURCE, ROWS, page_size=2),
        sink=MemorySink(),
        dead_letters=MemoryDeadLetters(),
        cursors=store,
    )
    assert store.cursors == {"v1": Cursor(at(5), 5)}


def test_a_version_ahead_of_the_lane_never_moves_back() -> None:
    store = MemoryCursorStore()
    store.cursors["v2"] = Cursor(at(4), 4)
    sink = MemorySink()
    sync(
        [version("v1"), version("v2")],
        extractor=ListExtractor(SOURCE, ROWS),
        sink=sink,
        dead_letters=MemoryDeadLetters(),
        cursors=store,
    )
    assert all(s["v2"] >= Cursor(at(4), 4) for s in store.saves)
    assert set(sink.docs["items_v2"]) == {"5"}  # only what lies past its own cursor


def test_compose_applies_stages_left_to_right() -> None:
    def double(xs: Iterator[int]) -> Iterator[int]:
        return (x * 2 for x in xs)

    def inc(xs: Iterator[int]) -> Iterator[int]:
        return (x + 1 for x in xs)

    assert list(compose(double, inc)(iter([1, 2]))) == [3, 5]


def test_retry_backs_off_then_gives_up_on_the_last_error() -> None:
    sleeps: list[float] = []
    calls: Iterator[OSError | str] = iter([OSError("a"), OSError("b"), "ok"])

    def flaky() -> str:
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    backoff = Backoff(attempts=3, initial=1.0, maximum=1.5)
    assert call_with_retry(flaky, retry_on=lambda e: True, backoff=backoff, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2 and 0.75 <= sleeps[0] <= 1.25 and 1.125 <= sleeps[1] <= 1.875

    def broken() -> str:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        call_with_retry(broken, retry_on=lambda e: True, backoff=backoff, sleep=sleeps.append)
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):  # not retryable: raised at once
        call_with_retry(
            lambda: empty["x"],
            retry_on=lambda e: isinstance(e, OSError),
            backoff=backoff,
            sleep=lambda s: pytest.fail("slept"),
        )


def test_deletes_are_not_sent_for_documents_the_index_does_not_hold() -> None:
    stocked = version("v3", predicate=lambda i: i.qty > 0)
    sink, letters = MemorySink(), MemoryDeadLetters()
    first = sync(
        [stocked],
        extractor=ListExtractor(SOURCE, ROWS, page_size=5),
        sink=sink,
        dead_letters=letters,
        cursors=MemoryCursorStore(),
        exclusive=True,
    )
    # a new index: the rejected row (2) and the soft-deleted one (4) cost no delete at all
    assert (first.versions["v3"].deleted, first.versions["v3"].not_found) == (0, 2)
    assert sink.deletes == 0
    # later, 1 leaves the predicate, 5 is soft-deleted, 2 is still out: one probe, two deletes
    later = [(1, "one", 0, at(6), None), (2, "two", 0, at(7), None), (5, "five", 2, at(8), at(8))]
    cursors = MemoryCursorStore()
    cursors.save({"v3": Cursor(at(5), 5)})
    second = sync(
        [stocked],
        extractor=ListExtractor(SOURCE, later, page_size=5),
        sink=sink,
        dead_letters=letters,
        cursors=cursors,
        exclusive=True,
    )
    assert (second.versions["v3"].deleted, second.versions["v3"].not_found) == (2, 1)
    assert sink.deletes == 2 and sink.probes == 1
    assert sink.docs["items_v3"] == {}
    # not the only writer: every delete is sent (a tombstone guards it against an older write)
    cursors.save({"v3": Cursor(at(5), 5)})
    sink.deletes = 0
    shared = sync(
        [stocked],
        extractor=ListExtractor(SOURCE, later, page_size=5),
        sink=sink,
        dead_letters=letters,
        cursors=MemoryCursorStore(),
    )
    assert sink.deletes == 3 and sink.probes == 1 and shared.versions["v3"].not_found == 3


def test_a_successful_write_resolves_the_open_dead_letter_of_that_version_only() -> None:
    v1, v2 = version("v1"), version("v2")
    sink, letters, cursors = MemorySink(), MemoryDeadLetters(), MemoryCursorStore()
    sync([v1, v2], extractor=ListExtractor(SOURCE, ROWS), sink=sink, dead_letters=letters, cursors=cursors)
    assert letters.open_keys(["v1", "v2"]) == {"v1": {"3"}, "v2": {"3"}}
    fixed = [(3, "three", 1, at(9), None)]
    sink.reject.add(("v2", "3"))  # v2 still refuses it
    sync([v1, v2], extractor=ListExtractor(SOURCE, fixed), sink=sink, dead_letters=letters, cursors=cursors)
    assert letters.resolved == [("v1", "3")]
    assert letters.open_keys(["v1", "v2"]) == {"v1": set(), "v2": {"3"}}
