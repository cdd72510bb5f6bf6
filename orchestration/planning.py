"""What the sensor and the schedule share: read cursors and the head, ask the core's pure planner,
and turn lanes into run requests (skipping lanes that already have a run queued or running)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus, RunRequest, RunsFilter

from etl_core import IndexVersion
from etl_core.model.cursor import Position
from etl_core.operations.lane_plan import Lane, plan_lanes
from orchestration.cursors import import_cursors
from orchestration.naming import Names
from orchestration.partitions import LANE_TAG, PARTITION_TAG, SOURCE_TAG, VALIDATE_TAG, lane_tags
from orchestration.resources import SyncServices
from orchestration.spec import SourceSpec

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
    return [v.key for v in versions if not v.retired and v.key not in retired]


def make_plan(instance: DagsterInstance, spec: SourceSpec, engine: SyncServices) -> Plan:
    names = spec.names
    with engine.connect(spec.source.name) as conns:
        conns.state.create()
        declared = active(spec.versions, conns.records.retired())
        existing = list(instance.get_dynamic_partitions(names.partitions_name))
        new = [k for k in declared if k not in existing]
        order = [k for k in existing if k in declared] + new
        import_cursors(instance, names.asset_key, order, conns.cursors)
        cursors = conns.cursors.load(order)
        if not order:
            return Plan(order, new, [], cursors)
        lag = conns.extractor(spec.source).lag(cursors)  # one statement for every version
    lanes = plan_lanes(order, cursors, lag, spec.close)
    return Plan(order, new, lanes, cursors)


def to_validate(instance: DagsterInstance, spec: SourceSpec, engine: SyncServices) -> list[str]:
    """Versions readers do not query yet that have caught up (they share the live lane) and were
    never validated: their checks run now, so a version that finished catching up shows whether
    it may be cut over. A failed validation is not repeated by itself: what failed (a transform,
    dead letters) needs an operator, who validates again."""
    with engine.connect(spec.source.name) as conns:
        conns.state.create()
        synced = set(active(spec.versions, conns.records.retired()))
        keys = [k for k in instance.get_dynamic_partitions(spec.names.partitions_name) if k in synced]
        cursors = conns.cursors.load(keys)
        if not any(cursors.values()):
            return []
        lag = conns.extractor(spec.source).lag(cursors)
        served = set(conns.sink.alias_targets(spec.read_alias))
        validated = conns.records.latest_outcomes()
        caught_up = [
            k
            for lane in plan_lanes(keys, cursors, lag, spec.close)
            if not lane.catch_up
            for k in lane.versions
        ]
        return [
            k
            for k in caught_up
            if cursors[k] is not None and spec.version(k).index not in served and k not in validated
        ]


def in_flight(instance: DagsterInstance, names: Names, lane: Lane) -> bool:
    tags = {LANE_TAG: "-".join(lane.versions), SOURCE_TAG: names.source}
    return bool(instance.get_runs(filters=RunsFilter(tags=tags, statuses=IN_FLIGHT), limit=1))


def run_request(
    names: Names, lane: Lane, trigger: str, catch_up_pages: int, follow_s: float = 0.0
) -> RunRequest:
    """A catch-up lane runs a page budget; a live lane runs to the bound, or follows the source
    for ``follow_s`` seconds when follow mode is on."""
    config: dict[str, Any] = {"max_pages": catch_up_pages} if lane.catch_up else {}
    if follow_s and not lane.catch_up:
        config["follow_s"] = follow_s
    return RunRequest(
        # A schedule tick asking for several lanes must key each (Dagster refuses the tick
        # otherwise); the key is scoped to the tick, so the next tick may ask again.
        run_key=f"{names.source}:{'-'.join(lane.versions)}" if trigger == "schedule" else None,
        tags={
            **lane_tags(names.source, lane.versions),
            "etl/trigger": trigger,
            "etl/catch_up": str(lane.catch_up).lower(),
        },
        run_config={"ops": {names.asset: {"config": config}}},
    )


def validation_request(names: Names, version: str, trigger: str) -> RunRequest:
    """The ``<source>_validate`` job for one version partition (its checks)."""
    return RunRequest(
        job_name=names.job("validate"),
        tags={
            PARTITION_TAG: version,
            VALIDATE_TAG: version,
            SOURCE_TAG: names.source,
            "etl/trigger": trigger,
        },
    )


def validation_in_flight(instance: DagsterInstance, names: Names, version: str) -> bool:
    tags = {VALIDATE_TAG: version, SOURCE_TAG: names.source}
    return bool(instance.get_runs(filters=RunsFilter(tags=tags, statuses=IN_FLIGHT), limit=1))


def backfill_request(names: Names, lane: Lane, trigger: str, shards: int) -> RunRequest:
    """A lane of versions that have never been synced, built by the ``<source>_backfill`` job in
    ``shards`` key ranges at once. The run carries the lane's tags, so neither the planner nor the
    schedule starts another run for the lane while it is in flight."""
    return RunRequest(
        job_name=names.job("backfill"),
        tags={
            **lane_tags(names.source, lane.versions),
            "etl/trigger": trigger,
            "etl/catch_up": "true",
            "etl/shards": str(shards),
        },
        run_config={
            "ops": {names.op("plan_shards"): {"config": {"versions": list(lane.versions), "shards": shards}}}
        },
    )
