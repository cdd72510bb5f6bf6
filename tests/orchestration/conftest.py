"""Dagster on its PostgreSQL storage (a fresh database per test), around the real services."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    Definitions,
    ExecuteInProcessResult,
    RunRequest,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.instance import DagsterInstance
from dagster._core.storage.defs_state.base import set_defs_state_storage
from sqlalchemy import Engine, text

from catalogue.source import CATALOGUE
from etl_core import IndexVersion
from etl_core.operations.lane_plan import CloseEnough
from etl_core.settings import Settings
from orchestration.project import build_definitions
from orchestration.resources import SyncServices
from tests.conftest import ROOT
from tests.integration.harness import Harness


@pytest.fixture
def dagster_instance(
    settings: Settings, admin_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    name = f"d_{uuid.uuid4().hex[:12]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    try:
        # Dagster keeps the "current" defs-state storage in a context variable that an instance
        # sets but does not always reset; pin it to this test's instance for the test's length.
        with set_defs_state_storage(instance.defs_state_storage):
            yield instance
    finally:
        instance.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


MIGRATION_OPS = {
    "catalogue_cut_over": "catalogue_swap_read_alias",
    "catalogue_retire": "catalogue_record_retirement",
    "catalogue_replay": "catalogue_replay_dead_letters",
    "catalogue_reconcile": "catalogue_reconcile_versions",
    "catalogue_change_tracking": "catalogue_tracking",
}
"""Each migration job's one op, whose config the job takes."""


@dataclass
class Project:
    """The project's definitions over this test's catalogue database and index names."""

    harness: Harness
    instance: DagsterInstance
    engine: SyncServices
    defs: Definitions | None = None

    def pinned(self) -> Any:
        """Dagster resolves definitions against a "current" defs-state storage kept in a context
        variable, which in-process runs can leave pointing at a disposed instance; pin ours."""
        return set_defs_state_storage(self.instance.defs_state_storage)

    def declare(self, versions: Sequence[IndexVersion[Any]], **kw: Any) -> Definitions:
        kw.setdefault("close", CloseEnough(timedelta(seconds=60), rows=150))
        kw.setdefault("catch_up_pages", 3)
        self.defs = build_definitions(CATALOGUE, versions, sync_services=self.engine, **kw)
        return self.defs

    def sensor_tick(self, defs: Definitions | None = None, source: str = "catalogue") -> SensorExecutionData:
        """Evaluate a planner sensor as the daemon does (``evaluate_tick``) and apply its
        partition requests."""
        defs = defs or self.defs
        assert defs is not None
        with self.pinned():
            sensor = defs.resolve_sensor_def(f"{source}_migration_planner")
        # Entered, so the instance the context opens from our ref is closed with it: left to the
        # garbage collector, its exit resets Dagster's defs-state context variable to a stale
        # storage at a random later moment (a later test then loads against a dropped database).
        with build_sensor_context(
            instance=self.instance, resources={"sync_services": self.engine}, definitions=defs
        ) as ctx:
            result = sensor.evaluate_tick(ctx)
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, AddDynamicPartitionsRequest)
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def schedule_tick(self) -> list[RunRequest]:
        """Evaluate the freshness schedule as the daemon does; its run requests."""
        assert self.defs is not None
        with self.pinned():
            schedule = self.defs.resolve_schedule_def("catalogue_freshness")
        with build_schedule_context(instance=self.instance, resources={"sync_services": self.engine}) as ctx:
            return list(schedule.evaluate_tick(ctx).run_requests or [])

    def execute(self, request: RunRequest) -> ExecuteInProcessResult:
        assert self.defs is not None
        with self.pinned():
            job = self.defs.resolve_job_def(request.job_name or "catalogue_sync")
        return job.execute_in_process(
            instance=self.instance, tags=request.tags, run_config=request.run_config
        )

    def run_job(self, name: str, **config: Any) -> ExecuteInProcessResult:
        """Run one of the migration jobs with its op's config, as the launchpad would."""
        assert self.defs is not None
        with self.pinned():
            job = self.defs.resolve_job_def(name)
        return job.execute_in_process(
            instance=self.instance,
            raise_on_error=False,
            run_config={"ops": {MIGRATION_OPS[name]: {"config": config}}},
        )

    def validate(self, partition: str) -> dict[str, Any]:
        """Run the validation checks of one partition; ``{check: (passed, description)}``."""
        assert self.defs is not None
        # the partition as a run tag, as the launchpad sets it (execute_in_process's own
        # partition_key argument wants an asset in the selection, and this job has only checks)
        with self.pinned():
            job = self.defs.resolve_job_def("catalogue_validate")
        result = job.execute_in_process(
            instance=self.instance, tags={"dagster/partition": partition}, raise_on_error=False
        )
        evaluations = result.get_asset_check_evaluations()
        # the run is red exactly when a blocking check of ERROR severity failed (a lag that heals
        # by itself warns, and still stops the cut-over)
        red = [
            e.check_name for e in evaluations if e.blocking and not e.passed and e.severity.value == "ERROR"
        ]
        assert result.success == (not red), red
        return {e.check_name: (e.passed, e.description) for e in evaluations}

    def observation(self, partition: str) -> dict[str, Any]:
        """The latest observation of a partition (reconcile and replay report there)."""
        from dagster import AssetKey, AssetRecordsFilter

        records = self.instance.fetch_observations(
            AssetRecordsFilter(asset_key=AssetKey("catalogue_index"), asset_partitions=[partition]),
            limit=1,
        ).records
        assert records and records[0].asset_observation is not None
        return {k: v.value for k, v in records[0].asset_observation.metadata.items()}

    def metadata(self, partition: str) -> dict[str, Any]:
        """The latest materialisation's metadata of a version partition, as plain values."""
        from dagster import AssetKey, AssetRecordsFilter

        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("catalogue_index"), asset_partitions=[partition]),
            limit=1,
        ).records
        assert records, f"no materialisation of partition {partition}"
        mat = records[0].asset_materialization
        assert mat is not None
        return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture
def project(harness: Harness, dagster_instance: DagsterInstance, settings: Settings) -> Project:
    url = settings.source_url.set(database=str(harness.source_engine.url.database))
    engine = SyncServices(
        source_database_url=url.render_as_string(hide_password=False),
        opensearch_url=settings.opensearch_url,
        etl_page_size="100",
    )
    return Project(harness, dagster_instance, engine)


ProjectFactory = Callable[..., Project]
