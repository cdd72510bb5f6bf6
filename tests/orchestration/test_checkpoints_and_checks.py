"""Two debts of the Dagster layer: a cursor that exists only as metadata (a checkpoint hidden behind
later observations), and asset checks that ignored subsetting."""

from __future__ import annotations

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    MetadataValue,
)

from catalogue.generate import generate
from catalogue.versions import V1
from etl_core.model.cursor import LogCursor
from etl_core.model.snapshot import Snapshot
from orchestration.cursors import import_cursors, read_cursor
from orchestration.metadata import CURSOR_KEY
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration
INDEX = AssetKey("catalogue_index")


def test_a_cursor_only_in_metadata_is_imported_once_into_the_state_table(project: Project) -> None:
    """A deployment from before the state table held cursors has them only as metadata: a
    checkpoint, then reconcile and replay observations without a cursor. The planner's tick
    imports it into the state table (the one truth) once; after that the event log is not read."""
    h = project.harness
    checkpoint = LogCursor.backfill(700, Snapshot.below(1234))
    project.instance.report_runless_asset_event(
        AssetObservation(
            INDEX, partition="v1", metadata={CURSOR_KEY: MetadataValue.json(checkpoint.to_json())}
        )
    )
    for n in range(45):  # more than a page of the walk back through observations
        project.instance.report_runless_asset_event(
            AssetObservation(INDEX, partition="v1", metadata={"reconcile_missing": n})
        )
    assert read_cursor(project.instance, INDEX, "v1") == checkpoint
    assert read_cursor(project.instance, INDEX, "v2") is None
    assert h.cursors.load(["v1"]) == {"v1": None}
    project.declare([h.version(V1)])
    project.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
    project.sensor_tick()  # the planner reads cursors: from the state table, after the import
    assert h.cursors.load(["v1", "v2"]) == {"v1": checkpoint, "v2": None}
    assert import_cursors(project.instance, INDEX, ["v1", "v2"], h.cursors) == {}  # once only
    # an operator rebuilds v1 by deleting its cursor row: it is not handed its old cursor back
    h.cursors.save({"v2": checkpoint})
    with h.state_engine.begin() as conn:
        conn.execute(h.state.log_cursors.delete().where(h.state.log_cursors.c.version == "v1"))
    project.sensor_tick()
    assert h.cursors.load(["v1", "v2"]) == {"v1": None, "v2": checkpoint}


def test_one_validation_check_alone_yields_that_check_alone(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=200, seed=91)
    project.declare([h.version(V1)])
    project.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
    assert project.execute(project.schedule_tick()[0]).success
    assert project.defs is not None
    with project.pinned():
        job = project.defs.resolve_job_def("catalogue_validate")
    lag = AssetCheckKey(INDEX, "lag_within_threshold")
    result = job.get_subset(asset_check_selection={lag}).execute_in_process(
        instance=project.instance, tags={"dagster/partition": "v1"}
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations] == ["lag_within_threshold"]
    assert evaluations[0].severity == AssetCheckSeverity.WARN  # lag heals by itself; parity does not
    full = {e.check_name: e.severity for e in project_checks(project)}
    assert full["documents_match_transform"] == AssetCheckSeverity.ERROR and len(full) == 5
    # the change log's upkeep warns and does not gate the cut-over
    assert full["change_log_within_threshold"] == AssetCheckSeverity.WARN


def project_checks(project: Project) -> list[AssetCheckEvaluation]:
    assert project.defs is not None
    with project.pinned():
        job = project.defs.resolve_job_def("catalogue_validate")
    # a failed blocking check fails the run; the evaluations are what these tests read
    result = job.execute_in_process(
        instance=project.instance, tags={"dagster/partition": "v1"}, raise_on_error=False
    )
    return list(result.get_asset_check_evaluations())
