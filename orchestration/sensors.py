"""The migration planner: declared versions → partitions → lanes → runs."""

from typing import Any

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from orchestration.planning import in_flight, make_plan, run_request
from orchestration.spec import SourceSpec


def build_planner_sensor(
    spec: SourceSpec,
    job: JobDefinition | Any,
    catch_up_pages: int,
    interval_s: int = 30,
    running: bool = True,
) -> SensorDefinition:
    names = spec.names

    @sensor(
        name=names.planner,
        job=job,
        required_resource_keys={spec.resource_key},
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="Adds a partition for each newly declared index version and keeps "
        "far-behind versions catching up in lanes of their own.",
    )
    def migration_planner(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        plan = make_plan(context.instance, spec, spec.engine(context.resources))
        requests = [
            run_request(names, lane, "migration_planner", catch_up_pages)
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
