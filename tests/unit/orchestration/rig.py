"""The project of ``tests.unit.models.SOURCE`` over a fake world and an ephemeral Dagster
instance, driven as the daemon (sensor and schedule ticks) and the launchpad (jobs) drive it.

It mirrors ``tests/orchestration/conftest.py``'s ``Project``, minus every service.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    ExecuteInProcessResult,
    RunRequest,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from etl_core.model.cursor import Cursor
from etl_core.model.versions import IndexVersion
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.validation import Thresholds
from orchestration.partitions import lane_tags
from orchestration.project import build_definitions
from tests.unit.fakes import at
from tests.unit.models import SOURCE, version
from tests.unit.orchestration.fake_services import FakeServices, World

VERSIONS = (version("v1"), version("v2"))
ROWS = [(i, f"item {i}", i, at(i), None) for i in range(1, 7)]
"""Six rows, one second apart: three pages of two (the world's page size)."""
HEAD = Cursor(at(6), 6)
"""Where a version that has read every row stands."""
ALIAS = "items"
INDEX = AssetKey("items_index")
CATCH_UP_PAGES = 2
MIGRATION_OPS = {
    "cut_over": "items_swap_read_alias",
    "retire": "items_record_retirement",
    "replay": "items_replay_dead_letters",
    "reconcile": "items_reconcile_versions",
}
"""Each migration job's one op, whose config the job takes."""


def build(services: FakeServices, versions: Sequence[IndexVersion[Any]] = VERSIONS) -> Definitions:
    """Everything explicit, so nothing in the environment changes what the tests see."""
    return build_definitions(
        SOURCE,
        versions,
        sync_services=services,
        index_prefix="",
        close=CloseEnough(timedelta(seconds=60), rows=1),
        catch_up_pages=CATCH_UP_PAGES,
        cron="* * * * *",
        automation=True,
        thresholds=Thresholds(),
        owners=["team:search"],
    )


@dataclass
class Rig:
    world: World
    instance: DagsterInstance
    services: FakeServices
    defs: Definitions

    def sensor_tick(self, name: str = "items_migration_planner") -> SensorExecutionData:
        """The planner (or another sensor) evaluated as the daemon does, its partition requests
        applied."""
        sensor = self.defs.resolve_sensor_def(name)
        with build_sensor_context(
            instance=self.instance, resources={"sync_services": self.services}, definitions=self.defs
        ) as ctx:
            result = sensor.evaluate_tick(ctx)
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, AddDynamicPartitionsRequest)
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def schedule_tick(self) -> list[RunRequest]:
        schedule = self.defs.resolve_schedule_def("items_freshness")
        with build_schedule_context(
            instance=self.instance, resources={"sync_services": self.services}
        ) as ctx:
            return list(schedule.evaluate_tick(ctx).run_requests or [])

    def add_partitions(self, *keys: str) -> None:
        self.instance.add_dynamic_partitions("items_versions", list(keys))

    def partitions(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions("items_versions"))

    def synced(self, *keys: str) -> None:
        """Versions that have a partition and have read every row (no run needed)."""
        self.add_partitions(*keys)
        self.world.cursors.save({k: HEAD for k in keys})

    def serve(self, key: str) -> None:
        """Readers query the version: the read alias names its index."""
        self.world.sink.point_alias(ALIAS, f"items_{key}")

    def run_in_flight(self, lane: str, source: str = "items") -> None:
        """A run of a lane that has started and not ended, as the planner finds one."""
        tags = {**lane_tags(source, lane.split("-")), "etl/catch_up": "true"}
        run = DagsterRun(
            job_name=f"{source}_sync", run_id=str(uuid.uuid4()), tags=tags, status=DagsterRunStatus.STARTED
        )
        self.instance.add_run(run)

    def execute(self, request: RunRequest) -> ExecuteInProcessResult:
        job = self.defs.resolve_job_def(request.job_name or "items_sync")
        return job.execute_in_process(
            instance=self.instance, tags=request.tags, run_config=request.run_config, raise_on_error=False
        )

    def sync(self, *keys: str) -> ExecuteInProcessResult:
        """One run of the sync job over the lane ``keys`` to the high watermark."""
        self.add_partitions(*keys)
        request = RunRequest(
            tags=lane_tags("items", keys), run_config={"ops": {"items_index": {"config": {}}}}
        )
        result = self.execute(request)
        assert result.success, self.failure(result)
        return result

    def run_job(self, step: str, **config: Any) -> ExecuteInProcessResult:
        """A migration job with its op's config, as the launchpad would run it."""
        job = self.defs.resolve_job_def(f"items_{step}")
        return job.execute_in_process(
            instance=self.instance,
            raise_on_error=False,
            run_config={"ops": {MIGRATION_OPS[step]: {"config": config}}},
        )

    def validate_run(self, partition: str) -> ExecuteInProcessResult:
        """The ``items_validate`` job for one partition (as a run tag, as the launchpad sets it);
        a blocking check that fails fails the run."""
        job = self.defs.resolve_job_def("items_validate")
        return job.execute_in_process(
            instance=self.instance, tags={"dagster/partition": partition}, raise_on_error=False
        )

    def validate(self, partition: str) -> dict[str, AssetCheckEvaluation]:
        """The evaluations of :meth:`validate_run`, by check name."""
        return {e.check_name: e for e in self.validate_run(partition).get_asset_check_evaluations()}

    @staticmethod
    def failure(result: ExecuteInProcessResult) -> str:
        """The message of the run's first step failure ("" when none failed)."""
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            return "" if error is None else error.message
        return ""

    def metadata(self, partition: str) -> dict[str, Any]:
        """The latest materialisation's metadata of a version partition, as plain values."""
        flt = AssetRecordsFilter(asset_key=INDEX, asset_partitions=[partition])
        records = self.instance.fetch_materializations(flt, limit=1).records
        assert records, f"no materialisation of partition {partition}"
        mat = records[0].asset_materialization
        assert mat is not None
        return {k: v.value for k, v in mat.metadata.items()}

    def observation(self, partition: str) -> dict[str, Any]:
        """The latest observation of a partition (reconcile and replay report there)."""
        flt = AssetRecordsFilter(asset_key=INDEX, asset_partitions=[partition])
        records = self.instance.fetch_observations(flt, limit=1).records
        assert records and records[0].asset_observation is not None
        return {k: v.value for k, v in records[0].asset_observation.metadata.items()}
