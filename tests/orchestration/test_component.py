"""A source declared in a ``defs.yaml`` (the ``SyncedSource`` component) is the same Dagster project
as one built in Python with ``build_definitions``, and ``dg`` scaffolds, checks and lists it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    ComponentTree,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
)
from dagster._core.storage.defs_state.base import set_defs_state_storage

import orchestration.component as component_module
from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from forum.source import FORUM
from forum.versions import VERSIONS as FORUM_VERSIONS
from orchestration.component import SourceConfigError, SyncedSource, load_source, load_versions
from orchestration.project import build_definitions
from tests.conftest import ROOT

DG = str(Path(sys.executable).with_name("dg"))


def _shape(defs: Definitions) -> dict[str, Any]:
    """What a code location offers, by name: assets, checks, jobs, schedules (with their cron and
    status), sensors, resources, and each job's ops with the pool they hold."""
    with set_defs_state_storage(None):  # no instance: as a fresh process loads it
        Definitions.validate_loadable(defs)
        repo = defs.get_repository_def()
    return {
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "checks": sorted(str(k) for k in repo.asset_graph.asset_check_keys),
        "jobs": {
            j.name: sorted(
                (n.name, str(getattr(n.definition, "pool", None))) for n in j.graph.node_dict.values()
            )
            for j in repo.get_all_jobs()
        },
        "schedules": sorted((s.name, s.cron_schedule, s.default_status) for s in repo.schedule_defs),
        "sensors": sorted((s.name, s.default_status) for s in repo.sensor_defs),
        "resources": sorted(repo.get_top_level_resources()),
    }


def test_the_defs_folder_builds_what_build_definitions_builds() -> None:
    """The default code location is the two defs.yaml files; it must offer exactly the objects the
    Python way offers, named the same (the UI, the tests and users' run configs name them)."""
    from orchestration.definitions import defs

    python = Definitions.merge(
        build_definitions(CATALOGUE, VERSIONS), build_definitions(FORUM, FORUM_VERSIONS)
    )
    declared = _shape(defs)
    assert declared == _shape(python)
    assert {"catalogue_index", "catalogue_source", "forum_index", "forum_source"} <= set(declared["assets"])
    assert {"catalogue_sync", "forum_sync", "catalogue_backfill", "forum_backfill"} <= set(declared["jobs"])


def _yaml_component(attributes: dict[str, Any]) -> Definitions:
    component = SyncedSource.from_attributes_dict(attributes=attributes)
    return component.build_defs(ComponentTree.for_test().load_context)


def test_per_source_settings_in_yaml_reach_the_dagster_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGUE_SHARDS", "4")
    defs = _yaml_component(
        {
            "source": "catalogue.source:CATALOGUE",
            "versions": "catalogue.versions.VERSIONS",  # the dotted spelling works too
            "schedule": "*/5 * * * *",
            "pool": "shop_db",
            "automation": False,
            "owners": ["team:search"],
            "read_alias": "shop",
            "shards": "{{ env.CATALOGUE_SHARDS }}",
        }
    )
    freshness = defs.resolve_schedule_def("catalogue_freshness")
    assert freshness.cron_schedule == "*/5 * * * *"
    assert freshness.default_status is DefaultScheduleStatus.STOPPED
    assert (
        defs.resolve_sensor_def("catalogue_migration_planner").default_status is DefaultSensorStatus.STOPPED
    )
    for job in ("catalogue_sync", "catalogue_cut_over", "catalogue_backfill"):
        pools = {
            getattr(n.definition, "pool", None) for n in defs.resolve_job_def(job).graph.node_dict.values()
        }
        assert pools == {"shop_db"}, job
    assert defs.resolve_asset_graph().get(AssetKey("catalogue_index")).owners == ["team:search"]
    assert "`shop`" in (defs.resolve_job_def("catalogue_cut_over").description or "")


def test_every_field_is_handed_to_build_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Follow window and shards shape the schedule's and the planner's run requests, which need an
    instance to evaluate: here it is enough that they reach ``build_definitions`` (whose own tests
    cover what it does with them); unset fields stay ``None``, i.e. the environment's default."""
    seen: list[dict[str, Any]] = []

    def spy(source: Any, versions: Any, **kwargs: Any) -> Definitions:
        seen.append({"source": source, "versions": versions, **kwargs})
        return Definitions()

    monkeypatch.setattr(component_module, "build_definitions", spy)
    base = {"source": "forum.source:FORUM", "versions": "forum.versions:VERSIONS"}
    _yaml_component({**base, "follow_s": 50, "shards": 8, "catch_up_pages": 20, "pool": "forum_db"})
    _yaml_component(base)
    full, bare = seen
    assert full["source"] is FORUM and full["versions"] == list(FORUM_VERSIONS)
    assert (full["follow_s"], full["backfill_shards"], full["catch_up_pages"], full["pool"]) == (
        50,
        8,
        20,
        "forum_db",
    )
    assert {k: v for k, v in bare.items() if k not in ("source", "versions")} == {
        "cron": None,
        "follow_s": None,
        "backfill_shards": None,
        "pool": None,
        "catch_up_pages": None,
        "automation": None,
        "read_alias": None,
        "owners": None,
    }


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"schedule": "every minute"}, "schedule.*must be a cron expression of five fields"),
        ({"follow_s": -1}, "follow_s.*must be 0 or more"),
        ({"shards": -2}, "shards.*must be 0 or more"),
        ({"catch_up_pages": 0}, "catch_up_pages.*must be 1 or more"),
        ({"shards": 2, "sharding": 3}, "sharding.*Extra inputs are not permitted"),
    ],
)
def test_bad_settings_fail_naming_the_field(attributes: dict[str, Any], message: str) -> None:
    base = {"source": "catalogue.source:CATALOGUE", "versions": "catalogue.versions:VERSIONS"}
    with pytest.raises(Exception, match=f"(?s){message}"):
        SyncedSource.from_attributes_dict(attributes={**base, **attributes})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("catalogue.source:CATALOG", "source: module 'catalogue.source' has no attribute 'CATALOG'"),
        ("catalogue.sauce:CATALOGUE", "source: cannot import module 'catalogue.sauce'"),
        ("nowhere:CATALOGUE", "source: cannot import module 'nowhere'"),
        ("CATALOGUE", "source: 'CATALOGUE' must name an object as package.module:ATTR"),
        (
            "catalogue.versions:VERSIONS",
            "source: 'catalogue.versions:VERSIONS' is a tuple, not an etl_core.Source",
        ),
    ],
)
def test_a_source_path_that_names_nothing_usable_says_which_field_and_why(path: str, message: str) -> None:
    with pytest.raises(SourceConfigError, match=re.escape(message)):
        load_source(path)


def test_a_versions_path_must_name_a_sequence_of_versions() -> None:
    assert load_versions("catalogue.versions:VERSIONS") == list(VERSIONS)
    with pytest.raises(
        SourceConfigError,
        match=re.escape("versions: 'catalogue.source:CATALOGUE' is a Source, not a non-empty"),
    ):
        load_versions("catalogue.source:CATALOGUE")


def test_an_import_error_inside_the_named_module_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module exists and fails on an import of its own: that error, not "cannot import"."""
    (tmp_path / "broken_source.py").write_text("import not_installed_anywhere\nSOURCE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        load_source("broken_source:SOURCE")


# --- dg, as a user runs it (each command is a process of its own; a few seconds each) ---


def _dg(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DG, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, **(env or {})},
        timeout=240,
    )


def test_dg_lists_both_sources_of_the_default_code_location() -> None:
    listed = _dg("list", "defs", "--json", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in found["assets"]}
    assert set(assets) == {"catalogue_index", "catalogue_source", "forum_index", "forum_source"}
    assert assets["forum_index"]["source"].startswith("orchestration/defs/forum/defs.yaml")
    assert {s["name"] for s in found["sensors"]} >= {"catalogue_migration_planner", "forum_migration_planner"}
    components = _dg("list", "components", "--json", cwd=ROOT)
    assert components.returncode == 0, components.stderr[-3000:]
    assert "orchestration.component.SyncedSource" in {
        c["key"] for c in json.loads(components.stdout)["items"]
    }


@pytest.fixture
def user_project(tmp_path: Path) -> Iterator[Path]:
    """A project of a user's own, as the README's walkthrough lays it out: ``myshop`` with a
    ``defs`` folder, its ``definitions.py`` and a ``pyproject.toml`` that tells dg where they are."""
    (tmp_path / "myshop" / "defs").mkdir(parents=True)
    (tmp_path / "myshop" / "__init__.py").write_text("")
    (tmp_path / "myshop" / "defs" / "__init__.py").write_text("")
    (tmp_path / "myshop" / "definitions.py").write_text(
        textwrap.dedent(
            """\
            from pathlib import Path

            from dagster import load_from_defs_folder

            defs = load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "myshop"

            [tool.dg.cli]
            telemetry = { enabled = false }
            suppress_warnings = ["project_and_activated_venv_mismatch"]
            """
        )
    )
    yield tmp_path


def test_dg_scaffolds_a_source_that_checks_and_a_bad_path_fails_naming_the_field(user_project: Path) -> None:
    env = {"PYTHONPATH": str(user_project)}
    scaffolded = _dg(
        "scaffold",
        "defs",
        "orchestration.component.SyncedSource",
        "shop",
        "--source",
        "catalogue.source:CATALOGUE",
        "--versions",
        "catalogue.versions:VERSIONS",
        cwd=user_project,
        env=env,
    )
    assert scaffolded.returncode == 0, scaffolded.stderr[-3000:]
    defs_yaml = user_project / "myshop" / "defs" / "shop" / "defs.yaml"
    text = defs_yaml.read_text()
    assert "type: orchestration.component.SyncedSource" in text
    assert "# follow_s:" in text and "# pool:" in text  # the optional settings, shown
    checked = _dg("check", "defs", cwd=user_project, env=env)
    assert checked.returncode == 0, checked.stderr[-3000:]

    defs_yaml.write_text(text.replace("catalogue.source:CATALOGUE", "catalogue.source:CATALOG"))
    broken = _dg("check", "defs", cwd=user_project, env=env)
    assert broken.returncode != 0
    assert "shop/defs.yaml: source: module 'catalogue.source' has no attribute 'CATALOG'" in (
        broken.stdout + broken.stderr
    )
