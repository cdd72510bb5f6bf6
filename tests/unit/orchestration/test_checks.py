"""The validation checks, run by the ``items_validate`` job for one partition over the fake engine:
what they evaluate, what they record for the cut-over to read, and that a document changed behind
the pipeline's back fails them. ``tests/orchestration`` runs the same on the real services.
"""

from __future__ import annotations

from dagster import AssetCheckKey, AssetCheckSeverity, AssetSelection, Definitions, define_asset_job
from dagster._core.event_api import PartitionKeyFilter

from tests.unit.orchestration.rig import INDEX, Rig

CHECKS = {
    "doc_count_matches_source",
    "documents_match_transform",
    "dead_letters_within_threshold",
    "lag_within_threshold",
}
"""A source without change capture has no change-log check."""


def test_a_synced_partition_passes_every_check_and_the_outcome_is_recorded(rig: Rig) -> None:
    rig.sync("v1")

    evaluations = rig.validate("v1")

    assert set(evaluations) == CHECKS
    assert all(e.passed for e in evaluations.values()), {k: e.description for k, e in evaluations.items()}
    assert evaluations["documents_match_transform"].description == "v1: 6 documents; 6 equal the source"
    assert evaluations["lag_within_threshold"].severity == AssetCheckSeverity.WARN
    assert evaluations["doc_count_matches_source"].severity == AssetCheckSeverity.ERROR
    recorded = rig.world.records.latest_validation("v1")
    assert recorded is not None and recorded[0] is True and recorded[1]["version"] == "v1"
    assert rig.world.records.latest_validation("v2") is None  # one partition, one version


def test_a_document_changed_behind_the_pipelines_back_fails_the_transform_check(rig: Rig) -> None:
    rig.sync("v1")
    held = rig.world.sink.docs["items_v1"]
    held["2"] = (held["2"][0], b'{"name":"edited by hand","qty":2}')

    run = rig.validate_run("v1")
    evaluations = {e.check_name: e for e in run.get_asset_check_evaluations()}

    failed = {k for k, e in evaluations.items() if not e.passed}
    assert failed == {"documents_match_transform"}
    assert not run.success  # a blocking check failed: the run is red
    assert "documents_match_transform" in rig.failure(run)
    assert "1 different (first keys ['2'])" in (evaluations["documents_match_transform"].description or "")
    recorded = rig.world.records.latest_validation("v1")
    assert recorded is not None and recorded[0] is False


def test_a_version_that_was_never_synced_fails_the_count_and_the_lag(rig: Rig) -> None:
    rig.add_partitions("v2")

    evaluations = rig.validate("v2")

    failed = {k for k, e in evaluations.items() if not e.passed}
    assert failed == {"doc_count_matches_source", "documents_match_transform", "lag_within_threshold"}
    assert evaluations["doc_count_matches_source"].description == "0 documents, source selects 6"


def test_a_range_materialised_with_its_checks_validates_every_version_of_it(rig: Rig) -> None:
    """A multi-partition run that includes the checks (the UI's "Materialize" over a range
    selects them) validates each version, records each, and shows each partition's results."""
    rig.add_partitions("v1", "v2")
    job = Definitions.merge(
        rig.defs, Definitions(jobs=[define_asset_job("with_checks", selection=AssetSelection.assets(INDEX))])
    ).resolve_job_def("with_checks")

    result = job.execute_in_process(
        instance=rig.instance,
        tags={"dagster/asset_partition_range_start": "v1", "dagster/asset_partition_range_end": "v2"},
    )

    assert result.success
    for key in ("v1", "v2"):
        recorded = rig.world.records.latest_validation(key)
        assert recorded is not None and recorded[0] is True, key
        latest = rig.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [AssetCheckKey(INDEX, name) for name in CHECKS], partition_filter=PartitionKeyFilter(key=key)
        )
        assert {k.name for k, record in latest.items() if record.status.value == "SUCCEEDED"} == CHECKS, key
        evaluation = latest[AssetCheckKey(INDEX, "doc_count_matches_source")].event
        assert evaluation is not None and evaluation.run_id == result.run_id


def test_the_checks_that_guard_the_cut_over_block_and_show_when_the_record_was_made(rig: Rig) -> None:
    rig.sync("v1")

    evaluations = rig.validate("v1")

    assert {k for k, e in evaluations.items() if e.blocking} == CHECKS  # the log's upkeep does not gate
    recorded = rig.world.records.latest_validation("v1")
    assert recorded is not None
    shown = evaluations["doc_count_matches_source"].metadata["recorded_at"]
    assert shown.value == recorded[2].timestamp()
    assert all(e.partition == "v1" for e in evaluations.values())
