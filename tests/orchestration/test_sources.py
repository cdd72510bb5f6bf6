"""Your own source, end to end: several sources in one code location and one instance, and one
cursor record shared by the command line and Dagster."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import Definitions
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.source import CATALOGUE
from catalogue.versions import V1
from etl_core.cli import main
from etl_core.model.versions import with_prefix
from etl_core.state.stores import PostgresCursorStore, StateSchema
from orchestration.project import build_definitions
from tests.integration.test_sync import assert_parity
from tests.orchestration.brands import B1, BRANDS
from tests.orchestration.conftest import Project


def _run(project: Project, defs: Definitions, job: str, request: Any) -> Any:
    with project.pinned():
        resolved = defs.resolve_job_def(job)
    return resolved.execute_in_process(
        instance=project.instance, tags=request.tags, run_config=request.run_config
    )


def test_two_sources_share_a_code_location_and_an_instance_without_sharing_state(project: Project) -> None:
    """Both have a version ``v1``; their assets, partitions, jobs, pools, run tags, state tables
    and aliases stay apart."""
    h = project.harness
    generate(h.source_engine, rows=300, seed=21)
    assert BRANDS.tracking is not None
    BRANDS.tracking.apply(h.source_engine)
    catalogue_v1, brands_v1 = h.version(V1), h.version(B1)  # type: ignore[arg-type]
    defs = Definitions.merge(
        build_definitions(CATALOGUE, [catalogue_v1], sync_services=project.engine, catch_up_pages=50),
        build_definitions(BRANDS, [brands_v1], sync_services=project.engine, catch_up_pages=50),
    )
    with project.pinned():
        Definitions.validate_loadable(defs)

    first = project.sensor_tick(defs, "catalogue")
    assert project.instance.get_dynamic_partitions("catalogue_versions") == ["v1"]
    assert project.instance.get_dynamic_partitions("brands_versions") == []
    (request,) = first.run_requests or []
    assert request.tags["etl/source"] == "catalogue" and request.tags["etl/lane"] == "v1"
    assert _run(project, defs, "catalogue_sync", request).success

    # the catalogue's v1 has a cursor; the brands' v1, in tables of its own, has none yet
    brands_state = StateSchema(h.state_engine, "brands")
    brands_state.create()
    assert PostgresCursorStore(brands_state).load(["v1"]) == {"v1": None}
    assert PostgresCursorStore(h.state).load(["v1"])["v1"] is not None

    second = project.sensor_tick(defs, "brands")
    (request,) = second.run_requests or []  # a lane "v1" of the catalogue is not in its way
    assert request.tags["etl/source"] == "brands"
    assert _run(project, defs, "brands_sync", request).success
    assert PostgresCursorStore(brands_state).load(["v1"])["v1"] is not None

    assert_parity(h, catalogue_v1)
    with h.source_engine.connect() as conn:
        names = {str(i): str(n) for i, n in conn.execute(text("SELECT id::text, name FROM brands"))}
    brand_docs = h.documents(brands_v1)
    assert {k: d["name"] for k, d in brand_docs.items()} == names and names


def test_the_command_line_and_dagster_keep_one_cursor(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source synced from the shell moves to Dagster without re-reading a row, and back."""
    h = project.harness
    generate(h.source_engine, rows=500, seed=22)
    monkeypatch.setenv("SOURCE_DATABASE_URL", h.source_engine.url.render_as_string(hide_password=False))
    monkeypatch.delenv("STATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ETL_INDEX_PREFIX", f"{h.prefix}_")  # the CLI and build_definitions both apply it
    cli = ["--source", "catalogue.source:CATALOGUE", "--versions", "tests.orchestration.test_sources:ONLY_V1"]

    assert main([*cli, "sync"]) == 0
    capsys.readouterr()
    project.declare([V1])
    assert project.sensor_tick().run_requests == []  # no catch-up: v1 is in sync already
    (tick,) = project.schedule_tick()
    assert project.execute(tick).success
    assert project.metadata("v1")["rows_read"] == 0  # nothing re-read

    with h.source_engine.begin() as conn:
        conn.execute(text("UPDATE products SET name = name || ' (new)' WHERE id <= 5"))
    (tick,) = project.schedule_tick()
    assert project.execute(tick).success
    assert project.metadata("v1")["docs_indexed"] == 5

    assert main([*cli, "sync"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"rows_read":0' in out  # what Dagster synced, the command line does not read again
    assert_parity(h, *with_prefix([V1], f"{h.prefix}_"))


ONLY_V1 = [V1]
