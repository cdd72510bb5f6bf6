"""The validation checks, run by the ``items_validate`` job for one partition over the fake engine:
what they evaluate, what they record for the cut-over to read, and that a document changed behind
the pipeline's back fails them. ``tests/orchestration`` runs the same on the real services.
"""

from __future__ import annotations

from dagster import AssetCheckSeverity

from tests.unit.orchestration.rig import Rig

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

    evaluations = rig.validate("v1")

    failed = {k for k, e in evaluations.items() if not e.passed}
    assert failed == {"documents_match_transform"}
    assert "1 different (first keys ['2'])" in (evaluations["documents_match_transform"].description or "")
    recorded = rig.world.records.latest_validation("v1")
    assert recorded is not None and recorded[0] is False


def test_a_version_that_was_never_synced_fails_the_count_and_the_lag(rig: Rig) -> None:
    rig.add_partitions("v2")

    evaluations = rig.validate("v2")

    failed = {k for k, e in evaluations.items() if not e.passed}
    assert failed == {"doc_count_matches_source", "documents_match_transform", "lag_within_threshold"}
    assert evaluations["doc_count_matches_source"].description == "0 documents, source selects 6"
