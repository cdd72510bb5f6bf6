"""A version's life: building → catching up → ready → live → retired.

Validation decides *ready*; the read alias decides *live* (OpenSearch is the truth for that);
retirement is recorded in the state schema. Cut-over refuses a version that has not passed
validation, and retirement refuses the live version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import Executable

from etl_core.cursor import Position
from etl_core.errors import EtlError
from etl_core.extract import Extractor
from etl_core.logs import event
from etl_core.protocols import CursorStore
from etl_core.reconcile import reconcile
from etl_core.settings import env_int
from etl_core.sink import OpenSearchSink
from etl_core.stores import PostgresDeadLetterStore, StateSchema
from etl_core.versions import IndexVersion, Lifecycle

R = TypeVar("R")


class LifecycleRefused(EtlError):
    """A cut-over or retirement that would break readers or skip validation."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_dead_letters: int = 0
    max_lag_rows: int = 0
    max_lag_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Thresholds:
        """``ETL_MAX_DEAD_LETTERS``, ``ETL_MAX_LAG_ROWS``, ``ETL_MAX_LAG_S`` (default 0, 0, 300)."""
        return cls(
            max_dead_letters=env_int(env, "ETL_MAX_DEAD_LETTERS", 0, minimum=0),
            max_lag_rows=env_int(env, "ETL_MAX_LAG_ROWS", 0, minimum=0),
            max_lag_seconds=float(env_int(env, "ETL_MAX_LAG_S", 300, minimum=0)),
        )


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValidationReport:
    version: str
    checks: tuple[CheckOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> str:
        return "; ".join(f"{c.name}: {c.description}" for c in self.checks if not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def validate(
    version: IndexVersion[R],
    *,
    extractor: Extractor[R],
    sink: OpenSearchSink,
    dead_letters: PostgresDeadLetterStore,
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
    checks = (
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
    report = ValidationReport(version.key, checks)
    event("validated", version=version.key, passed=report.passed, failures=report.failures())
    return report


class Lifecycles:
    """Validations and retirements, kept in the state schema."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state

    def record(self, report: ValidationReport) -> None:
        stmt = self.state.validations.insert().values(
            version=report.version, passed=report.passed, report=report.to_json()
        )
        self.state.call("recording a validation", lambda: self._write(stmt))

    def _write(self, stmt: Executable) -> None:
        with self.state.engine.begin() as conn:
            conn.execute(stmt)

    def _rows(self, stmt: Executable) -> list[Any]:
        with self.state.engine.connect() as conn:
            return list(conn.execute(stmt).all())

    def latest_validation(self, version: str) -> tuple[bool, dict[str, Any], datetime] | None:
        t = self.state.validations
        stmt = (
            select(t.c.passed, t.c.report, t.c.validated_at)
            .where(t.c.version == version)
            .order_by(t.c.id.desc())
            .limit(1)
        )
        rows = self.state.call("reading validations", lambda: self._rows(stmt))
        return None if not rows else (bool(rows[0][0]), dict(rows[0][1]), rows[0][2])

    def retired(self) -> set[str]:
        stmt = select(self.state.retirements.c.version)
        return {r[0] for r in self.state.call("reading retirements", lambda: self._rows(stmt))}

    def cut_over(self, version: IndexVersion[Any], alias: str, sink: OpenSearchSink) -> list[str]:
        """Point ``alias`` at the version's index in one atomic request, after restoring its
        serving settings. The same call rolls back: cut over to the previous version."""
        if version.key in self.retired():
            raise LifecycleRefused(f"version {version.key!r} is retired; it is no longer synced")
        latest = self.latest_validation(version.key)
        if latest is None:
            raise LifecycleRefused(
                f"version {version.key!r} has never been validated; run the validation checks "
                f"for partition {version.key} first"
            )
        passed, report, at = latest
        if not passed:
            failed = "; ".join(
                f"{c['name']}: {c['description']}" for c in report["checks"] if not c["passed"]
            )
            raise LifecycleRefused(
                f"version {version.key!r} failed validation at {at.isoformat()}: {failed}. "
                "Fix it (reconcile, replay dead letters, let it catch up) and validate again"
            )
        sink.finish_backfill(version)
        previous = sink.point_alias(alias, version.index)
        event("cut_over", version=version.key, alias=alias, index=version.index, previous=previous)
        return previous

    def retire(
        self, version: IndexVersion[Any], alias: str, sink: OpenSearchSink, grace: timedelta
    ) -> datetime:
        """Stop syncing the version; its index is deleted once ``grace`` has passed."""
        if version.index in sink.alias_targets(alias):
            raise LifecycleRefused(
                f"version {version.key!r} is live behind alias {alias!r}; cut over to another "
                "version before retiring it"
            )
        delete_after = datetime.now(UTC) + grace
        t = self.state.retirements
        stmt = insert(t).values(version=version.key, index_name=version.index, delete_after=delete_after)
        upsert = stmt.on_conflict_do_nothing(index_elements=[t.c.version])
        self.state.call("recording a retirement", lambda: self._write(upsert))
        event("retired", version=version.key, index=version.index, delete_after=delete_after.isoformat())
        return delete_after

    def delete_expired(self, sink: OpenSearchSink) -> list[str]:
        """Delete the indices of versions retired longer than their grace period."""
        t = self.state.retirements
        due = self.state.call(
            "reading retirements",
            lambda: self._rows(
                select(t.c.version, t.c.index_name).where(
                    t.c.deleted_at.is_(None), t.c.delete_after <= func.now()
                )
            ),
        )
        for version, index in due:
            sink.delete_index(index)
            done: Executable = t.update().where(t.c.version == version).values(deleted_at=func.now())
            self.state.call("recording a deleted index", partial(self._write, done))
        return [index for _, index in due]


def lifecycle_state(
    *, retired: bool, live: bool, validated: bool, cursor: Position | None, behind: bool
) -> Lifecycle:
    if retired:
        return Lifecycle.RETIRED
    if live:
        return Lifecycle.LIVE
    if cursor is None or behind:
        return Lifecycle.BUILDING
    return Lifecycle.READY if validated else Lifecycle.CATCHING_UP
