"""The planner sensor and the freshness schedule, over the fake engine: which partitions they add,
which lanes get runs, with what tags and config, and which they leave alone (in flight, retired).

Seconds, no service: the planning logic alone. ``tests/orchestration`` proves the same on
PostgreSQL, OpenSearch and a Dagster database.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import DagsterRun, DagsterRunStatus, RunRequest

from tests.unit.fakes import T0
from tests.unit.models import version
from tests.unit.orchestration.rig import CATCH_UP_PAGES, Rig


def _lane(request: RunRequest) -> str:
    return request.tags["etl/lane"]


def test_the_planner_adds_a_new_version_and_starts_its_catch_up_lane_alone(rig: Rig) -> None:
    rig.synced("v1")  # live: at the head of the source, behind the read alias
    rig.serve("v1")

    tick = rig.sensor_tick()

    assert rig.partitions() == ["v1", "v2"]
    (request,) = tick.run_requests or []  # the live lane is the schedule's, not the planner's
    assert request.tags["etl/lane"] == "v2"
    assert request.tags["etl/source"] == "items"
    assert request.tags["etl/catch_up"] == "true"
    assert request.tags["etl/trigger"] == "migration_planner"
    assert request.tags["dagster/asset_partition_range_start"] == "v2"
    assert request.tags["dagster/asset_partition_range_end"] == "v2"
    assert request.run_config == {"ops": {"items_index": {"config": {"max_pages": CATCH_UP_PAGES}}}}
    assert request.run_key is None


def test_two_versions_declared_together_share_one_catch_up_lane(rig: Rig) -> None:
    """Neither has a cursor: they would read the same pages, so they read them once."""
    (request,) = rig.sensor_tick().run_requests or []
    assert _lane(request) == "v1-v2"
    assert rig.partitions() == ["v1", "v2"]


def test_a_lane_with_a_run_in_flight_gets_no_second_run(rig: Rig) -> None:
    rig.synced("v1")
    rig.serve("v1")
    rig.add_partitions("v2")
    rig.run_in_flight("v2", source="orders")  # another source's lane of the same name: no matter
    assert [_lane(r) for r in rig.sensor_tick().run_requests or []] == ["v2"]

    rig.run_in_flight("v2")
    tick = rig.sensor_tick()

    assert not tick.run_requests
    assert tick.skip_message is not None


def test_a_retired_version_gets_no_partition_and_no_run(rig: Rig) -> None:
    rig.synced("v1")
    rig.serve("v1")
    rig.world.records.add_retirement(version("v2"), T0 + timedelta(days=1))

    tick = rig.sensor_tick()

    assert rig.partitions() == ["v1"]
    assert not tick.run_requests
    assert not tick.dynamic_partitions_requests
    assert tick.skip_message is not None and "('v1',)" in tick.skip_message


def test_the_schedule_keys_one_run_per_lane(scheduled_rig: Rig) -> None:
    rig = scheduled_rig
    rig.synced("v1")
    rig.add_partitions("v2")

    requests = {r.run_key or "": r for r in rig.schedule_tick()}

    assert sorted(requests) == ["items:v1", "items:v2"]
    live, catch_up = requests["items:v1"], requests["items:v2"]
    assert live.tags["etl/catch_up"] == "false"
    assert live.tags["etl/trigger"] == "schedule"
    assert live.run_config == {"ops": {"items_index": {"config": {}}}}  # to the high watermark
    assert catch_up.tags["etl/catch_up"] == "true"
    assert catch_up.run_config == {"ops": {"items_index": {"config": {"max_pages": CATCH_UP_PAGES}}}}


def test_the_schedule_leaves_new_versions_to_the_planner_and_busy_lanes_alone(scheduled_rig: Rig) -> None:
    rig = scheduled_rig
    rig.synced("v1")  # v2 is declared but has no partition yet

    assert [r.run_key for r in rig.schedule_tick()] == ["items:v1"]
    assert rig.partitions() == ["v1"]  # adding partitions is the planner's job

    rig.run_in_flight("v1")
    assert rig.schedule_tick() == []


VALIDATOR = "items_validate_caught_up"


def test_a_version_that_has_caught_up_is_validated_once_and_only_while_readers_do_not_query_it(
    rig: Rig,
) -> None:
    rig.sync("v1", "v2")  # both at the head, with their documents
    rig.serve("v1")

    (request,) = rig.sensor_tick(VALIDATOR).run_requests or []  # v1 is live: only v2 needs its checks

    assert request.job_name == "items_validate"
    assert request.tags["dagster/partition"] == "v2"
    assert request.tags["etl/validate"] == "v2"
    in_flight = DagsterRun(
        job_name="items_validate", run_id="in-flight", tags=request.tags, status=DagsterRunStatus.STARTED
    )
    rig.instance.add_run(in_flight)
    assert not rig.sensor_tick(VALIDATOR).run_requests  # one validation of a version at a time

    rig.instance.delete_run("in-flight")
    assert rig.execute(request).success
    assert rig.world.records.latest_validation("v2") is not None
    tick = rig.sensor_tick(VALIDATOR)
    assert not tick.run_requests  # recorded: not again (a failed one waits for an operator)
    assert not rig.sensor_tick().run_requests  # and the migration planner has nothing to do


def test_a_version_still_catching_up_is_not_validated(rig: Rig) -> None:
    rig.synced("v1")
    rig.serve("v1")
    rig.add_partitions("v2")

    assert not rig.sensor_tick(VALIDATOR).run_requests
    assert [r.tags["etl/lane"] for r in rig.sensor_tick().run_requests or []] == ["v2"]
