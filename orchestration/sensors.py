"""The migration planner: declared versions → partitions → lanes → runs."""

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    JobDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from etl_core import IndexVersion, Source
from etl_core.planner import CloseEnough
from orchestration.partitions import VERSION_PARTITIONS
from orchestration.planning import in_flight, make_plan, run_request
from orchestration.resources import SyncEngine


def build_planner_sensor(
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    job: JobDefinition | Any,
    asset_key: AssetKey,
    close: CloseEnough,
    catch_up_pages: int,
    interval_s: int = 30,
    running: bool = True,
) -> SensorDefinition:
    @sensor(
        name="migration_planner",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="Adds a partition for each newly declared index version and keeps "
        "far-behind versions catching up in lanes of their own.",
    )
    def migration_planner(
        context: SensorEvaluationContext, sync_engine: SyncEngine
    ) -> SensorResult | SkipReason:
        plan = make_plan(context.instance, asset_key, source, versions, sync_engine, close)
        requests = [
            run_request(lane, "migration_planner", catch_up_pages)
            for lane in plan.lanes
            if lane.catch_up and not in_flight(context.instance, lane)
        ]
        if not requests and not plan.new:
            return SkipReason(f"no version is behind; lanes: {[lane.versions for lane in plan.lanes]}")
        context.log.info(
            f"new partitions {plan.new}; catch-up runs for {[r.tags['etl/lane'] for r in requests]}"
        )
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[VERSION_PARTITIONS.build_add_request(plan.new)] if plan.new else [],
        )

    return migration_planner
