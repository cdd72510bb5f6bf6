"""Keeps every lane moving: each tick requests one run per lane that has no run queued or running.

Live lanes run to the high watermark; catch-up lanes run a page budget, so a long backfill advances
chunk by chunk between the live lane's runs (the pool admits one sync run at a time).
"""

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from etl_core import IndexVersion, Source
from etl_core.planner import CloseEnough
from orchestration.planning import in_flight, make_plan, run_request
from orchestration.resources import SyncEngine


def build_freshness_schedule(
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    job: JobDefinition | Any,
    asset_key: AssetKey,
    close: CloseEnough,
    catch_up_pages: int,
    cron: str,
    running: bool = True,
    follow_s: float = 0.0,
) -> ScheduleDefinition:
    @schedule(
        name="keep_live_versions_fresh",
        job=job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED,
        description="One run per lane every tick: live lanes to the watermark, "
        "catch-up lanes by a page budget.",
    )
    def keep_fresh(
        context: ScheduleEvaluationContext, sync_engine: SyncEngine
    ) -> list[RunRequest] | SkipReason:
        plan = make_plan(context.instance, asset_key, source, versions, sync_engine, close)
        known = set(plan.partitions) - set(plan.new)  # the sensor adds partitions, not us
        lanes = [lane for lane in plan.lanes if set(lane.versions) <= known]
        requests = [
            run_request(lane, "schedule", catch_up_pages, follow_s)
            for lane in lanes
            if not in_flight(context.instance, lane)
        ]
        return requests or SkipReason("no partitions yet, or every lane already has a run")

    return keep_fresh
