from __future__ import annotations

from datetime import timedelta

from etl_core.cursor import Cursor
from etl_core.planner import Lane, plan_lanes
from tests.unit.fakes import at

HEAD = at(1000)
CLOSE = timedelta(seconds=60)


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
