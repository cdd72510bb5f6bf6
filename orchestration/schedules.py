"""Keeps the live lanes fresh: every tick, one run per lane of caught-up versions."""


from collections.abc import Sequence
from datetime import timedelta
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
from orchestration.planning import in_flight, make_plan, run_request
from orchestration.resources import SyncEngine


def build_freshness_schedule(source: Source[Any], versions: Sequence[IndexVersion[Any]],
                             job: JobDefinition | Any,
                             asset_key: AssetKey, close_enough: timedelta,
                             cron: str) -> ScheduleDefinition:
    @schedule(name="keep_live_versions_fresh", job=job, cron_schedule=cron,
              default_status=DefaultScheduleStatus.RUNNING,
              description="One extraction per lane of caught-up versions, every tick.")
    def keep_fresh(context: ScheduleEvaluationContext,
                   sync_engine: SyncEngine) -> list[RunRequest] | SkipReason:
        plan = make_plan(context.instance, asset_key, source, versions, sync_engine, close_enough)
        known = set(plan.partitions) - set(plan.new)  # the sensor adds partitions, not us
        lanes = [lane for lane in plan.lanes
                 if not lane.catch_up and set(lane.versions) <= known]
        requests = [run_request(lane, "schedule", 0) for lane in lanes
                    if not in_flight(context.instance, lane)]
        return requests or SkipReason("no live lane, or every live lane already has a run")

    return keep_fresh
