"""The code location loads the way the webserver loads it, and bad declarations fail at load."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from dagster import Definitions
from dagster._core.storage.defs_state.base import set_defs_state_storage

from catalogue.source import CATALOGUE
from catalogue.versions import V1, V2
from etl_core import ConfigError
from orchestration.project import build_definitions
from orchestration.resources import SyncEngine
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
    assert {s.name for s in repo.sensor_defs} == {"catalogue_migration_planner"}
    assert {s.name for s in repo.schedule_defs} == {"catalogue_freshness", "catalogue_reconcile_nightly"}
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
    with pytest.raises(ConfigError, match="ETL_CATCH_UP_PAGES='lots' is not a whole number"):
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
    settings = SyncEngine.from_env().settings()
    assert settings.opensearch_url == "http://search.internal:9200" and settings.page_size == 250
    monkeypatch.delenv("OPENSEARCH_URL")
    with pytest.raises(ConfigError, match="OPENSEARCH_URL is not set"):
        SyncEngine.from_env().settings()
