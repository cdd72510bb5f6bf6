"""Keeps every lane moving: each tick requests one run per lane that has no run queued or running.

Live lanes run to the high watermark; catch-up lanes run a page budget, so a long backfill advances
chunk by chunk between the live lane's runs (the pool admits one sync run at a time).
"""

from typing import Any

from dagster import (
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from orchestration.planning import in_flight, make_plan, run_request
from orchestration.spec import SourceSpec


def build_freshness_schedule(
    spec: SourceSpec,
    job: JobDefinition | Any,
    catch_up_pages: int,
    cron: str,
    running: bool = True,
    follow_s: float = 0.0,
) -> ScheduleDefinition:
    names = spec.names

    @schedule(
        name=names.freshness,
        job=job,
        required_resource_keys={spec.resource_key},
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED,
        description="One run per lane every tick: live lanes to the watermark, "
        "catch-up lanes by a page budget.",
    )
    def keep_fresh(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
        plan = make_plan(context.instance, spec, spec.engine(context.resources))
        known = set(plan.partitions) - set(plan.new)  # the sensor adds partitions, not us
        lanes = [lane for lane in plan.lanes if set(lane.versions) <= known]
        requests = [
            run_request(names, lane, "schedule", catch_up_pages, follow_s)
            for lane in lanes
            if not in_flight(context.instance, names, lane)
        ]
        return requests or SkipReason("no partitions yet, or every lane already has a run")

    return keep_fresh
