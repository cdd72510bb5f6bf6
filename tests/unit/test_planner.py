from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from etl_core.model.cursor import Cursor
from etl_core.model.records import Lag
from etl_core.operations.lane_plan import CloseEnough, Lane
from etl_core.operations.lane_plan import plan_lanes as plan
from tests.unit.fakes import at

HEAD = at(1000)
CLOSE = CloseEnough(timedelta(seconds=60), rows=100)


def plan_lanes(
    versions: Sequence[str],
    cursors: Mapping[str, Cursor | None],
    head: datetime | None,
    close: CloseEnough,
    rows: Mapping[str, int] | None = None,
) -> list[Lane]:
    """The planner, with the lag a change-column source reports for these cursors and head."""
    seconds = {
        v: 0.0 if head is None else float("inf") if c is None else (head - c.changed_at).total_seconds()
        for v, c in cursors.items()
    }
    behind = {
        v: (rows or {}).get(v, 0 if head is None else 1 if c is None else 0) for v, c in cursors.items()
    }
    return plan(versions, cursors, Lag(behind, seconds), close)


def test_close_versions_share_one_lane() -> None:
    cursors = {"v1": Cursor(at(990), 1), "v2": Cursor(at(950), 7)}
    assert plan_lanes(["v1", "v2"], cursors, HEAD, CLOSE) == [Lane(("v1", "v2"), False)]


def test_a_new_version_gets_its_own_catch_up_lane() -> None:
    cursors = {"v1": Cursor(at(990), 1), "v2": Cursor(at(995), 7), "v3": None}
    assert plan_lanes(["v1", "v2", "v3"], cursors, HEAD, CLOSE) == [
        Lane(("v1", "v2"), False),
        Lane(("v3",), True),
    ]


def test_lanes_merge_once_the_new_version_is_close() -> None:
    cursors = {"v1": Cursor(at(990), 1), "v2": Cursor(at(995), 7), "v3": Cursor(at(941), 3)}
    assert plan_lanes(["v1", "v2", "v3"], cursors, HEAD, CLOSE) == [Lane(("v1", "v2", "v3"), False)]


def test_far_behind_versions_never_share_and_lanes_stay_contiguous() -> None:
    cursors = {"v1": Cursor(at(999), 1), "v2": None, "v3": Cursor(at(10), 1), "v4": Cursor(at(999), 2)}
    assert plan_lanes(["v1", "v2", "v3", "v4"], cursors, HEAD, CLOSE) == [
        Lane(("v1",), False),
        Lane(("v2",), True),
        Lane(("v3",), True),
        Lane(("v4",), False),
    ]


def test_an_empty_source_has_nobody_behind() -> None:
    assert plan_lanes(["v1", "v2"], {"v1": None, "v2": None}, None, CLOSE) == [Lane(("v1", "v2"), False)]


def test_versions_behind_at_the_same_cursor_share_a_catch_up_lane() -> None:
    same = Cursor(at(10), 4)
    cursors = {"v1": None, "v2": None, "v3": same, "v4": same, "v5": Cursor(at(11), 1)}
    assert plan_lanes(["v1", "v2", "v3", "v4", "v5"], cursors, HEAD, CLOSE) == [
        Lane(("v1", "v2"), True),
        Lane(("v3", "v4"), True),
        Lane(("v5",), True),
    ]


def test_rows_behind_count_even_when_the_clock_says_close() -> None:
    """A bulk load stamps many rows with one instant: time lag 0, yet far behind."""
    cursors = {"v1": Cursor(HEAD, 900), "v2": Cursor(HEAD, 100)}
    assert plan_lanes(["v1", "v2"], cursors, HEAD, CLOSE, {"v1": 0, "v2": 800}) == [
        Lane(("v1",), False),
        Lane(("v2",), True),
    ]
