from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from etl_core.model.cursor import Cursor, external_version, lowest, merge
from tests.unit.fakes import at


def test_merge_takes_the_later_position_in_either_order() -> None:
    a, b = Cursor(at(1), 5), Cursor(at(1), 7)
    assert merge(a, b) == b and merge(b, a) == b
    assert merge(None, a) == a and merge(a, None) == a
    assert merge(Cursor(at(2), 1), b) == Cursor(at(2), 1)


def test_lowest_starts_from_the_beginning_when_any_version_is_new() -> None:
    assert lowest([Cursor(at(1), 1), None]) is None
    assert lowest([Cursor(at(3), 1), Cursor(at(2), 9)]) == Cursor(at(2), 9)


def test_external_version_follows_the_change_column_and_ignores_the_time_zone() -> None:
    t = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    later = t + timedelta(microseconds=1)
    assert external_version(later) == external_version(t) + 1
    same_instant = t.astimezone(timezone(timedelta(hours=2)))
    assert external_version(same_instant) == external_version(t)
    assert external_version(t.replace(tzinfo=None)) == external_version(t)


def test_cursor_round_trips_through_json() -> None:
    c = Cursor(at(5), "sku-1")
    assert Cursor.from_json(c.to_json()) == c
