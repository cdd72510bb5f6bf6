"""Snapshots and change-log positions: the order the reader and the cursor store rely on."""

from __future__ import annotations

import itertools

import pytest

from etl_core.model.cursor import LogCursor, merge
from etl_core.model.snapshot import Snapshot, earliest

# Snapshots of one server in the order they were taken: 100 and 101 run, 101 commits (xmax
# moves past it), then 100 commits (xmin moves), then 103 commits while 102 still runs.
TAKEN = [
    Snapshot(100, 100, ()),
    Snapshot(100, 102, (100,)),
    Snapshot(102, 102, ()),
    Snapshot(102, 104, (102,)),
]


def test_text_round_trip_and_visibility() -> None:
    s = Snapshot.parse("100:104:100,102")
    assert s == Snapshot(100, 104, (100, 102)) and str(s) == "100:104:100,102"
    assert [x for x in range(98, 106) if s.visible(x)] == [98, 99, 101, 103]
    with pytest.raises(ValueError, match="not a PostgreSQL snapshot"):
        Snapshot.parse("nonsense")


def test_rank_and_external_version_grow_as_snapshots_are_taken_and_differ_when_content_can() -> None:
    assert [s.rank for s in TAKEN] == sorted(s.rank for s in TAKEN)
    versions = [s.external_version() for s in TAKEN]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert earliest(list(reversed(TAKEN))) == TAKEN[0]
    # the bound the old reader used stays put while 100 runs; the new version does not
    assert TAKEN[0].xmin == TAKEN[1].xmin and versions[0] < versions[1]


A, B, C = TAKEN[0], TAKEN[1], TAKEN[3]
READS = [  # in the order a version passes them
    LogCursor.backfill(1, A),
    LogCursor.backfill(7, A),
    LogCursor.done(A),
    LogCursor.in_batch(A, B, 3),
    LogCursor.in_batch(A, B, 5),  # within a batch: by key
    LogCursor.done(B),
    LogCursor.in_batch(B, C, 1),
    LogCursor.done(C),
]


def test_positions_order_like_the_reads() -> None:
    for earlier, later in itertools.combinations(READS, 2):
        assert earlier < later and merge(later, earlier) == later


def test_the_cursor_stores_columns_order_exactly_like_the_positions() -> None:
    """The store merges in SQL on (head, key, tail); the same order in Python, over every pair."""

    def sql_order(p: LogCursor) -> tuple[object, ...]:
        head, key, tail = p.rank_columns()
        return (head, (0,) if key is None else (1, key), tail)  # jsonb null sorts first

    for x, y in itertools.permutations(READS, 2):
        assert (x < y) == (sql_order(x) < sql_order(y)), (x, y)


def test_a_batch_started_elsewhere_is_not_skipped() -> None:
    """A version done at a later snapshot still sits before a lane's batch toward a newer one,
    whatever that batch started from: its changes are delivered to it, not filtered out."""
    a, later, head = TAKEN[0], TAKEN[2], TAKEN[3]
    assert LogCursor.done(later) < LogCursor.in_batch(a, head, 1)


def test_positions_of_the_reader_before_are_read_conservatively() -> None:
    assert LogCursor.from_json({"xid": 500, "seq": 7}) == LogCursor.done(Snapshot(500, 500, ()))
    assert LogCursor.from_json({"backfill_key": 42, "bound": 500}) == LogCursor.backfill(
        42, Snapshot.below(500)
    )
    for position in (LogCursor.done(TAKEN[1]), LogCursor.in_batch(TAKEN[0], TAKEN[1], 8)):
        assert LogCursor.from_json(position.to_json()) == position
