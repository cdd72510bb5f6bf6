"""Validation of a version partition, as Dagster asset checks: the gate before a cut-over.

One streamed comparison of every document feeds the checks. The outcome is recorded once, in the
state schema (``<source>__validations``), which is what every cut-over reads, the command line's
and Dagster's alike; the checks are how Dagster runs that validation and shows it, per version,
with the record's time in their metadata. The checks that guard the cut-over are blocking: an
asset a user makes depend on the index waits for them and does not run when one fails.
"""

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
    multi_asset_check,
)

from etl_core.operations.validation import CheckOutcome, Thresholds
from orchestration.cursors import import_cursors
from orchestration.spec import SourceSpec

CHECKS = {
    "doc_count_matches_source": "Documents in the index equal the source rows its predicate selects.",
    "documents_match_transform": "Every document equals the version's transform of its source row.",
    "dead_letters_within_threshold": "Open dead letters are at or below the threshold.",
    "lag_within_threshold": "The version is within the lag threshold of the source head.",
    "change_log_within_threshold": "The source's change log is within its size and age thresholds.",
}

NOT_GATING = {"change_log_within_threshold"}
"""The log's upkeep is the source's, not this version's: it warns and never stops a cut-over."""

# Lag heals by itself at the next sync: a warning. Missing, drifted or dead-lettered documents
# do not: errors. (The cut-over refuses a version whose latest validation failed a gating check,
# warning or error.)
SEVERITY = {
    "lag_within_threshold": AssetCheckSeverity.WARN,
    "change_log_within_threshold": AssetCheckSeverity.WARN,
}


def _shown(value: Any) -> Any:
    """A check's metadata value as the UI shows it best: JSON for structures, a timestamp for a time."""
    if isinstance(value, dict | list):
        return MetadataValue.json(value)
    if isinstance(value, datetime):
        return MetadataValue.timestamp(value)
    return value


def _metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _shown(v) for k, v in values.items()}


def _evaluation(
    asset: AssetKey, version: str, check: CheckOutcome, recorded_at: datetime
) -> AssetCheckEvaluation:
    return AssetCheckEvaluation(
        asset_key=asset,
        check_name=check.name,
        passed=check.passed,
        severity=SEVERITY.get(check.name, AssetCheckSeverity.ERROR),
        description=check.description,
        metadata=_metadata({"version": version, "recorded_at": recorded_at, **check.metadata}),
        blocking=check.name not in NOT_GATING,
        partition=version,
    )


def build_validation_checks(spec: SourceSpec, index: AssetsDefinition, thresholds: Thresholds) -> Any:
    @multi_asset_check(
        name=spec.names.checks,
        specs=[
            AssetCheckSpec(
                name,
                asset=index.key,
                description=text,
                partitions_def=spec.names.partitions,
                blocking=name not in NOT_GATING,
            )
            for name, text in CHECKS.items()
            if name not in NOT_GATING or spec.source.tracking is not None
        ],
        pool=spec.names.pool,
        required_resource_keys={spec.resource_key},
        can_subset=True,
    )
    def _validate(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        """One version: its results. A range (a multi-partition materialisation with its checks):
        every version of it is validated and recorded, each partition's results logged as check
        evaluations of that partition, since a result yielded by a range step has no partition."""
        run = context.op_execution_context
        keys = list(run.partition_keys) if run.has_partition_key_range else [context.partition_key]
        selected = {k.name for k in context.selected_asset_check_keys}
        with spec.operate(context.resources) as ops:
            import_cursors(context.instance, index.key, keys, ops.conns.cursors)
            recorded = [ops.validate(key, thresholds) for key in keys]
        for report, at in recorded:
            for check in report.checks:
                if check.name not in selected:
                    continue  # a subset run yields what it was asked for, nothing more
                evaluation = _evaluation(index.key, report.version, check, at)
                if len(keys) > 1:
                    run.log_event(evaluation)  # type: ignore[arg-type]  # handled since 1.9, not in the hint
                    continue
                yield AssetCheckResult(
                    asset_key=index.key,
                    check_name=check.name,
                    passed=evaluation.passed,
                    severity=evaluation.severity,
                    description=evaluation.description,
                    metadata=evaluation.metadata,
                )
        if len(keys) > 1:
            context.log.info(f"validated {keys}, each recorded; results logged per partition")

    return _validate
