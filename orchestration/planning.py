"""What the sensor and the schedule share: read cursors and the head, ask the core's pure planner,
and turn lanes into run requests (skipping lanes that already have a run queued or running)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunRequest, RunsFilter

from etl_core import IndexVersion, Lifecycle, Source
from etl_core.cursor import Position
from etl_core.lifecycle import Lifecycles
from etl_core.planner import CloseEnough, Lane, plan_lanes
from orchestration.cursors import read_cursors
from orchestration.partitions import LANE_TAG, VERSION_PARTITIONS, lane_tags
from orchestration.resources import SyncEngine

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class Plan:
    partitions: list[str]
    """Version keys in partition order, existing ones first (the order ranges are drawn in)."""
    new: list[str]
    lanes: list[Lane]
    cursors: dict[str, Position | None]


def active(versions: Sequence[IndexVersion[Any]], retired: set[str]) -> list[str]:
    """Declared versions that are still synced (retired in code, or by the retire job, are not)."""
    return [v.key for v in versions if v.state is not Lifecycle.RETIRED and v.key not in retired]


def make_plan(
    instance: DagsterInstance,
    asset_key: AssetKey,
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    engine: SyncEngine,
    close: CloseEnough,
) -> Plan:
    with engine.connect() as conns:
        conns.state.create()
        declared = active(versions, Lifecycles(conns.state).retired())
        existing = list(instance.get_dynamic_partitions(VERSION_PARTITIONS.name))
        new = [k for k in declared if k not in existing]
        order = [k for k in existing if k in declared] + new
        cursors = read_cursors(instance, asset_key, order)
        if not order:
            return Plan(order, new, [], cursors)
        lag = conns.extractor(source).lag(cursors)  # one statement for every version
    lanes = plan_lanes(order, cursors, lag, close)
    return Plan(order, new, lanes, cursors)


def in_flight(instance: DagsterInstance, lane: Lane) -> bool:
    runs = instance.get_runs(
        filters=RunsFilter(tags={LANE_TAG: "-".join(lane.versions)}, statuses=IN_FLIGHT), limit=1
    )
    return bool(runs)


def run_request(lane: Lane, trigger: str, catch_up_pages: int, follow_s: float = 0.0) -> RunRequest:
    """A catch-up lane runs a page budget; a live lane runs to the bound, or follows the source
    for ``follow_s`` seconds when follow mode is on."""
    config: dict[str, Any] = {"max_pages": catch_up_pages} if lane.catch_up else {}
    if follow_s and not lane.catch_up:
        config["follow_s"] = follow_s
    return RunRequest(
        tags={**lane_tags(lane.versions), "etl/trigger": trigger, "etl/catch_up": str(lane.catch_up).lower()},
        run_config={"ops": {"search_index": {"config": config}}},
    )
