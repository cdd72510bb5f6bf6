"""The code location loads the way the webserver loads it, and bad declarations fail at load."""

from __future__ import annotations

import dataclasses

import pytest
from dagster import Definitions

from catalogue.source import CATALOGUE
from catalogue.versions import V1, V2
from etl_core import ConfigError
from orchestration.project import build_definitions


def test_the_workspace_code_location_loads() -> None:
    from orchestration.definitions import defs

    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {
        "sync_index",
        "validate_version",
        "cut_over",
        "retire_version",
        "replay_dead_letters",
        "reconcile",
    }
    assert {s.name for s in repo.sensor_defs} == {"migration_planner"}
    assert {s.name for s in repo.schedule_defs} == {"keep_live_versions_fresh", "reconcile_nightly"}


def test_bad_declarations_fail_at_load() -> None:
    with pytest.raises(ConfigError, match="'v1' is declared twice"):
        build_definitions(CATALOGUE, [V1, dataclasses.replace(V1, index="other")])
    needy = dataclasses.replace(V2, key="v9", index="products_v9", needs=frozenset({"colour"}))
    with pytest.raises(ConfigError, match=r"needs \['colour'\]"):
        build_definitions(CATALOGUE, [V1, needy])


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_CATCH_UP_PAGES", "lots")
    with pytest.raises(ConfigError, match="ETL_CATCH_UP_PAGES='lots' must be a whole number"):
        build_definitions(CATALOGUE, [V1])
