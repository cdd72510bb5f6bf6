"""Validation: the four checks that gate a cut-over, from one streamed comparison of every
document with the version's transform of the source.

The report is plain data; :class:`etl_core.operations.lifecycle.MigrationRecords` records it, and the cut-over
reads the latest one back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from etl_core.logs import event
from etl_core.model.protocols import CursorStore, DeadLetterStore, SearchIndex
from etl_core.model.versions import IndexVersion
from etl_core.operations.reconcile import reconcile
from etl_core.read.extract import Extractor

if TYPE_CHECKING:
    from etl_core.settings import Declared

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_dead_letters: int = 0
    max_lag_rows: int = 0
    max_lag_seconds: float = 300.0
    max_log_mb: int = 1024
    max_log_age_s: float = 86_400.0

    @classmethod
    def of(cls, declared: Declared) -> Thresholds:
        """``ETL_MAX_DEAD_LETTERS``, ``ETL_MAX_LAG_ROWS``, ``ETL_MAX_LAG_S`` (default 0, 0, 300);
        ``ETL_MAX_LOG_MB``, ``ETL_MAX_LOG_AGE_S`` for the change log (default 1024 MB, a day)."""
        return cls(
            max_dead_letters=declared.etl_max_dead_letters,
            max_lag_rows=declared.etl_max_lag_rows,
            max_lag_seconds=declared.etl_max_lag_s,
            max_log_mb=declared.etl_max_log_mb,
            max_log_age_s=declared.etl_max_log_age_s,
        )


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    gates: bool = True
    """Whether a failure stops the cut-over; a warning about the source's upkeep does not."""


@dataclass(frozen=True, slots=True)
class ValidationReport:
    version: str
    checks: tuple[CheckOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.gates)

    def failures(self) -> str:
        return "; ".join(f"{c.name}: {c.description}" for c in self.checks if c.gates and not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def validate(
    version: IndexVersion[R],
    *,
    extractor: Extractor[R],
    sink: SearchIndex,
    dead_letters: DeadLetterStore,
    cursors: CursorStore,
    thresholds: Thresholds = Thresholds(),
) -> ValidationReport:
    """The four checks that gate a cut-over, from one streamed comparison of every document."""
    drift = reconcile([version], extractor, sink, repair=False, dead_letters=dead_letters)[version.key]
    letters = dead_letters.count_open(version.key)
    cursor = cursors.load([version.key])[version.key]
    lag = extractor.lag({version.key: cursor})
    rows_behind = lag.rows_behind[version.key]
    seconds_behind = lag.seconds_behind(version.key)
    checks: tuple[CheckOutcome, ...] = (
        CheckOutcome(
            "doc_count_matches_source",
            drift.count_matches,
            f"{drift.indexed} documents, source selects {drift.expected}"
            + (f" (and {drift.dead_lettered} dead-lettered rows)" if drift.dead_lettered else ""),
            {"documents": drift.indexed, "source_rows": drift.expected, "dead_lettered": drift.dead_lettered},
        ),
        CheckOutcome(
            "documents_match_transform",
            drift.ok,
            drift.describe(),
            {**drift.counts, "examples": drift.examples},
        ),
        CheckOutcome(
            "dead_letters_within_threshold",
            letters <= thresholds.max_dead_letters,
            f"{letters} open dead letters (threshold {thresholds.max_dead_letters})",
            {"open_dead_letters": letters},
        ),
        CheckOutcome(
            "lag_within_threshold",
            rows_behind <= thresholds.max_lag_rows and seconds_behind <= thresholds.max_lag_seconds,
            f"{rows_behind} rows and {seconds_behind:.1f} s behind the source "
            f"(thresholds {thresholds.max_lag_rows} rows, {thresholds.max_lag_seconds:.0f} s)",
            {
                "lag_rows": rows_behind,
                "lag_seconds": -1.0 if seconds_behind == float("inf") else seconds_behind,
            },
        ),
    )
    if lag.log is not None:
        checks += (log_upkeep(lag.log, thresholds),)
    report = ValidationReport(version.key, checks)
    event("validated", version=version.key, passed=report.passed, failures=report.failures())
    return report


def log_upkeep(log: Mapping[str, Any], thresholds: Thresholds) -> CheckOutcome:
    """The change log is trimmed below the slowest non-retired version: one that lags or never
    started lets it grow. A warning (it does not gate the cut-over): sync or retire that version."""
    megabytes = log["bytes"] / 1_048_576
    age = log["oldest_entry_age_s"]
    passed = megabytes <= thresholds.max_log_mb and (age is None or age <= thresholds.max_log_age_s)
    return CheckOutcome(
        "change_log_within_threshold",
        passed,
        f"change log {megabytes:.1f} MB, about {log['entries_estimate']} entries, oldest "
        + ("none" if age is None else f"{age:.0f} s old")
        + f" (thresholds {thresholds.max_log_mb} MB, {thresholds.max_log_age_s} s); a version that "
        "lags or never started holds it: sync or retire it",
        dict(log),
        gates=False,
    )
