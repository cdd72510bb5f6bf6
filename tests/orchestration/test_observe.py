"""The source is observed, not "Never observed": the ``<source>_observe`` job (what its schedule
runs) records the change log's head, the committed changes waiting for the slowest version that
is not retired, and the oldest one's age, on the real change log."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetKey
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import V1, V2
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def observe(project: Project) -> dict[str, Any]:
    assert project.defs is not None
    with project.pinned():
        job = project.defs.resolve_job_def("catalogue_observe")
    result = job.execute_in_process(instance=project.instance)
    assert result.success
    (event,) = result.get_asset_observation_events()
    assert event.asset_key == AssetKey("catalogue_source")
    return {k: v.value for k, v in event.asset_observation_data.asset_observation.metadata.items()}


def test_the_source_is_observed_with_its_head_and_what_waits(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=150, seed=31)
    v1, v2 = h.version(V1), h.version(V2)
    project.declare([v1, v2], owners=["team:search"])
    h.sync([v1])
    first = observe(project)
    assert ":" in first["head"] and first["versions"] == "v1,v2"
    assert first["waiting_rows"] == 150 and first["oldest_waiting_age_s"] is None  # v2 not begun

    h.sync([v2])
    with h.source_engine.begin() as conn:
        conn.execute(text("UPDATE products SET stock = stock + 1 WHERE id IN (3, 4)"))
    waiting = observe(project)
    # both versions have begun and two changes wait: an age is given (its value is a clock's)
    assert waiting["waiting_rows"] == 2 and waiting["oldest_waiting_age_s"] is not None
    assert waiting["log_entries_estimate"] >= 0 and waiting["open_transactions"] == 0

    h.sync([v1, v2])
    assert observe(project)["waiting_rows"] == 0
