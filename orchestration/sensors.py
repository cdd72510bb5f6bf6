"""The migration planner: declared versions → partitions → lanes → runs."""

from typing import Any

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from etl_core.operations.lane_plan import Lane
from orchestration.planning import (
    backfill_request,
    in_flight,
    make_plan,
    run_request,
    to_validate,
    validation_in_flight,
    validation_request,
)
from orchestration.spec import SourceSpec


def build_planner_sensor(
    spec: SourceSpec,
    job: JobDefinition | Any,
    catch_up_pages: int,
    interval_s: int = 30,
    running: bool = True,
    backfill_job: JobDefinition | None = None,
    backfill_shards: int = 0,
) -> SensorDefinition:
    """With ``backfill_job`` and ``backfill_shards`` ≥ 2, a lane of versions that have never been
    synced (a new version, or one whose index was dropped to rebuild it) is built by the sharded
    backfill job; a lane that has begun goes on in paged catch-up runs of the sync job."""
    names = spec.names
    sharded = backfill_job is not None and backfill_shards >= 2

    def request(lane: Lane, cursors: dict[str, Any]) -> RunRequest:
        if sharded and all(cursors.get(k) is None for k in lane.versions):
            return backfill_request(names, lane, "migration_planner", backfill_shards)
        return run_request(names, lane, "migration_planner", catch_up_pages)

    @sensor(
        name=names.planner,
        jobs=[job, backfill_job] if sharded and backfill_job is not None else [job],
        required_resource_keys={spec.resource_key},
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="Adds a partition for each newly declared index version and keeps "
        "far-behind versions catching up in lanes of their own.",
    )
    def migration_planner(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        plan = make_plan(context.instance, spec, spec.engine(context.resources))
        requests = [
            request(lane, plan.cursors)
            for lane in plan.lanes
            if lane.catch_up and not in_flight(context.instance, names, lane)
        ]
        if not requests and not plan.new:
            return SkipReason(f"no version is behind; lanes: {[lane.versions for lane in plan.lanes]}")
        context.log.info(
            f"new partitions {plan.new}; catch-up runs for {[r.tags['etl/lane'] for r in requests]}"
        )
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[names.partitions.build_add_request(plan.new)] if plan.new else [],
        )

    return migration_planner


def build_validation_sensor(
    spec: SourceSpec, validate_job: JobDefinition | Any, interval_s: int = 30, running: bool = True
) -> SensorDefinition:
    """The checks of a version that has caught up and that readers do not query yet, run once
    (:func:`orchestration.planning.to_validate`): the partition's checks then say whether the
    version may be cut over, without anyone launching them. One validation of a version at a time."""
    names = spec.names

    @sensor(
        name=names.job("validate_caught_up"),
        jobs=[validate_job],
        required_resource_keys={spec.resource_key},
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="Runs the validation checks (the cut-over gate) of each version readers do "
        "not query yet, once it has caught up with the live lane; a failed validation is "
        "repeated only when someone runs the checks again.",
    )
    def validate_caught_up(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        wanted = to_validate(context.instance, spec, spec.engine(context.resources))
        requests = [
            validation_request(names, key, names.job("validate_caught_up"))
            for key in wanted
            if not validation_in_flight(context.instance, names, key)
        ]
        if not requests:
            return SkipReason(f"no caught-up version waits for its first validation ({wanted} in flight)")
        return SensorResult(run_requests=requests)

    return validate_caught_up
