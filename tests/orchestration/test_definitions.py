"""The code location loads the way the webserver loads it, and bad declarations fail at load."""

import dataclasses
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    FreshnessPolicy,
    OpExecutionContext,
    job,
    op,
)
from dagster._core.storage.defs_state.base import set_defs_state_storage

from catalogue.source import CATALOGUE
from catalogue.versions import V1, V2
from etl_core import ConfigError
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.validation import Thresholds
from etl_core.settings import Declared, Settings
from orchestration.project import build_definitions
from orchestration.resources import SyncServices, services_of
from tests.conftest import ROOT


def test_the_workspace_code_location_loads_in_a_process_of_its_own() -> None:
    """As the webserver and the daemon load it: ``workspace.yaml``, a fresh process."""
    loaded = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "search_sync" in loaded.stdout + loaded.stderr


def test_every_object_is_named_after_its_source() -> None:
    from orchestration.definitions import defs

    with set_defs_state_storage(None):  # no instance: load it as a fresh process would
        Definitions.validate_loadable(defs)
        repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {
        f"catalogue_{step}"
        for step in ("sync", "validate", "cut_over", "retire", "replay", "reconcile", "change_tracking")
    }
    assert {s.name for s in repo.sensor_defs} == {
        f"{source}_{sensor}"
        for source in ("catalogue", "forum")
        for sensor in ("migration_planner", "validate_caught_up")
    }
    assert {s.name for s in repo.schedule_defs} == {
        f"{source}_{schedule}"
        for source in ("catalogue", "forum")
        for schedule in ("freshness", "reconcile_nightly", "observe_source")
    }
    # every job, schedule and sensor says what it is for, in the UI
    jobs = [j for j in repo.get_all_jobs() if not j.name.startswith("__")]  # Dagster's implicit one
    for job_def in jobs:
        assert job_def.description, job_def.name
    for schedule in repo.schedule_defs:
        assert schedule.description, schedule.name
    for sensor in repo.sensor_defs:
        assert sensor.description, sensor.name
    index = repo.asset_graph.get(
        next(k for k in repo.asset_graph.get_all_asset_keys() if k.path == ["catalogue_index"])
    )
    assert index.partitions_def is not None and index.partitions_def.name == "catalogue_versions"  # type: ignore[attr-defined]
    assert index.group_name == "catalogue"


def test_bad_declarations_fail_at_load() -> None:
    with pytest.raises(ConfigError, match="'v1' is declared twice"):
        build_definitions(CATALOGUE, [V1, dataclasses.replace(V1, index="other")])
    needy = dataclasses.replace(V2, key="v9", index="products_v9", needs=frozenset({"colour"}))
    with pytest.raises(ConfigError, match=r"needs \['colour'\]"):
        build_definitions(CATALOGUE, [V1, needy])
    with pytest.raises(ConfigError, match="ETL_INDEX_PREFIX='Prod ' cannot start an OpenSearch index name"):
        build_definitions(CATALOGUE, [V1], index_prefix="Prod ")


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_CATCH_UP_PAGES", "lots")
    with pytest.raises(ConfigError, match="ETL_CATCH_UP_PAGES='lots' must be a whole number"):
        build_definitions(CATALOGUE, [V1])


def test_the_index_prefix_reaches_every_index_and_the_read_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_INDEX_PREFIX", "staging-")
    defs = build_definitions(CATALOGUE, [V1, V2])
    job = defs.resolve_job_def("catalogue_cut_over")
    assert "`staging-products`" in (job.description or "")


def test_the_resource_reads_the_environment_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A script or a test may build the resource from the environment and ask it for settings."""
    monkeypatch.setenv("OPENSEARCH_URL", "http://search.internal:9200")
    monkeypatch.setenv("ETL_PAGE_SIZE", "250")
    settings = SyncServices.from_env().settings()
    assert settings.opensearch_url == "http://search.internal:9200" and settings.page_size == 250
    monkeypatch.delenv("OPENSEARCH_URL")
    with pytest.raises(ConfigError, match="OPENSEARCH_URL is not set"):
        SyncServices.from_env().settings()


# Every declared setting set to a value unlike its default (run-time ones and definition ones).
_NOT_DEFAULT = {
    "SOURCE_DATABASE_URL": "postgresql+psycopg://etl:pw@db.internal:5433/shop",
    "STATE_DATABASE_URL": "postgresql+psycopg://etl:pw@state.internal:5433/state",
    "TRACKING_DATABASE_URL": "postgresql+psycopg://owner:pw@db.internal:5433/shop",
    "OPENSEARCH_URL": "https://search.internal:9201",
    "OPENSEARCH_USER": "etl",
    "OPENSEARCH_PASSWORD": "os-pw",
    "OPENSEARCH_CA_CERTS": "/etc/ssl/search-ca.pem",
    "OPENSEARCH_VERIFY_CERTS": "false",
    "ETL_PAGE_SIZE": "321",
    "ETL_BULK_MAX_BYTES": "654321",
    "ETL_BULK_IN_FLIGHT": "3",
    "ETL_STATE_SCHEMA": "sync_state",
    "ETL_FOLLOW_POLL_S": "2.5",
    "ETL_INDEX_PREFIX": "staging-",
    "ETL_CLOSE_ENOUGH_S": "12.5",
    "ETL_CLOSE_ENOUGH_ROWS": "77",
    "ETL_CATCH_UP_PAGES": "9",
    "ETL_BACKFILL_SHARDS": "3",
    "ETL_FOLLOW_S": "4.5",
    "ETL_SCHEDULE_CRON": "*/7 * * * *",
    "ETL_RECONCILE_CRON": "15 4 * * *",
    "ETL_OBSERVE_CRON": "*/11 * * * *",
    "ETL_OWNERS": "team:search, ops@example.com",
    "ETL_AUTOMATION": "off",
    "ETL_MAX_DEAD_LETTERS": "5",
    "ETL_MAX_LAG_ROWS": "6",
    "ETL_MAX_LAG_S": "7.5",
    "ETL_MAX_LOG_MB": "8",
    "ETL_MAX_LOG_AGE_S": "9.5",
    "ETL_FRESHNESS_WARN_S": "61",
    "ETL_FRESHNESS_FAIL_S": "90.5",
}


_SEEN: dict[str, object] = {}


@op(required_resource_keys={"sync_services"})
def look(context: OpExecutionContext) -> None:
    services = services_of(context.resources, "sync_services")
    _SEEN["fields"] = {name: getattr(services, name) for name in Declared.RESOURCE_FIELDS}
    _SEEN["settings"] = services.settings()


@job
def probe() -> None:
    look()


def test_every_declared_setting_reaches_a_dagster_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run-time settings travel as the resource's ``EnvVar`` fields and are resolved inside the
    run; the others shape the definitions when the code location loads."""
    assert {name.lower() for name in _NOT_DEFAULT} == set(Declared.model_fields), "a setting is untested"
    for name, value in _NOT_DEFAULT.items():
        monkeypatch.setenv(name, value)
    seen = _SEEN
    defs = build_definitions(CATALOGUE, [V1, V2], sync_services=SyncServices.from_env())
    assert defs.resources is not None
    result = Definitions(jobs=[probe], resources=dict(defs.resources)).resolve_job_def("probe")
    assert result.execute_in_process().success
    # inside the run every field holds its variable's value, resolved by Dagster
    assert seen["fields"] == {name: _NOT_DEFAULT[name.upper()] for name in Declared.RESOURCE_FIELDS}
    settings = seen["settings"]
    assert isinstance(settings, Settings)
    assert (settings.page_size, settings.bulk_max_bytes, settings.bulk_in_flight) == (321, 654321, 3)
    assert (settings.state_schema, settings.follow_poll_s, settings.opensearch_verify_certs) == (
        "sync_state",
        2.5,
        False,
    )
    assert settings.state_url.host == "state.internal" and settings.tracking_url is not None
    assert (settings.opensearch_user, settings.opensearch_password) == ("etl", "os-pw")
    assert settings.opensearch_ca_certs == "/etc/ssl/search-ca.pem"

    # the definition-time settings
    freshness = defs.resolve_schedule_def("catalogue_freshness")
    nightly = defs.resolve_schedule_def("catalogue_reconcile_nightly")
    planner = defs.resolve_sensor_def("catalogue_migration_planner")
    observe = defs.resolve_schedule_def("catalogue_observe_source")
    assert (freshness.cron_schedule, nightly.cron_schedule) == ("*/7 * * * *", "15 4 * * *")
    assert observe.cron_schedule == "*/11 * * * *"
    graph = defs.resolve_asset_graph()
    for key in ("catalogue_index", "catalogue_source"):
        assert graph.get(AssetKey(key)).owners == ["team:search", "ops@example.com"]
    policy = graph.get(AssetKey("catalogue_index")).freshness_policy
    assert policy == FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=90.5), warn_window=timedelta(seconds=61)
    )
    assert freshness.default_status is DefaultScheduleStatus.STOPPED
    assert planner.default_status is DefaultSensorStatus.STOPPED
    assert "`staging-products`" in (defs.resolve_job_def("catalogue_cut_over").description or "")
    spec = Declared.read()
    assert CloseEnough.of(spec).rows == 77 and CloseEnough.of(spec).seconds.total_seconds() == 12.5
    assert Thresholds.of(spec) == Thresholds(5, 6, 7.5, 8, 9.5)
    assert (spec.etl_catch_up_pages, spec.etl_backfill_shards, spec.etl_follow_s) == (9, 3, 4.5)
