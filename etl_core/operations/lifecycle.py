"""A version's life: building → catching up → ready → live → retired.

Validation (:mod:`etl_core.operations.validation`) decides *ready*; the read alias decides *live* (OpenSearch
is the truth for that); retirement is recorded in the state schema. :class:`MigrationRecords` holds
what is recorded (validations, retirements); :func:`cut_over`, :func:`retire` and
:func:`delete_expired` are the migration's steps, each refusing what would break readers or skip
validation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import Executable

from etl_core.errors import EtlError
from etl_core.logs import event
from etl_core.model.cursor import Position
from etl_core.model.protocols import Aliases
from etl_core.model.versions import IndexVersion, Lifecycle
from etl_core.operations.validation import ValidationReport
from etl_core.state.stores import StateSchema


class LifecycleRefused(EtlError):
    """A cut-over or retirement that would break readers or skip validation."""


class MigrationRecords:
    """What a migration records: validations and retirements, in the source's state tables."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state

    def record(self, report: ValidationReport) -> datetime:
        """Record the outcome; when it was recorded (the time every reader of the record shows)."""
        t = self.state.validations
        stmt = (
            t.insert()
            .values(version=report.version, passed=report.passed, report=report.to_json())
            .returning(t.c.validated_at)
        )

        def write() -> datetime:
            with self.state.engine.begin() as conn:
                at: datetime = conn.execute(stmt).scalar_one()
                return at

        return self.state.call("recording a validation", write)

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

    def latest_outcomes(self) -> dict[str, bool]:
        """Whether each validated version's latest validation passed, in one query (versions
        never validated are absent)."""
        t = self.state.validations
        stmt = select(t.c.version, t.c.passed).distinct(t.c.version).order_by(t.c.version, t.c.id.desc())
        return {v: bool(p) for v, p in self.state.call("reading validations", lambda: self._rows(stmt))}

    def retired(self) -> set[str]:
        return set(self.retirements())

    def retirements(self) -> dict[str, datetime]:
        """Each retired version and when it was retired."""
        t = self.state.retirements
        stmt = select(t.c.version, t.c.retired_at)
        return {v: at for v, at in self.state.call("reading retirements", lambda: self._rows(stmt))}

    def add_retirement(self, version: IndexVersion[Any], delete_after: datetime) -> datetime:
        """Record the retirement (a second one changes nothing); when the index is deleted, as
        recorded: a repeated ``retire`` reports the first one's date, the one that counts."""
        t = self.state.retirements
        stmt = insert(t).values(version=version.key, index_name=version.index, delete_after=delete_after)
        upsert = stmt.on_conflict_do_nothing(index_elements=[t.c.version])
        read = select(t.c.delete_after).where(t.c.version == version.key)

        def record() -> datetime:
            with self.state.engine.begin() as conn:
                conn.execute(upsert)
                found: datetime = conn.execute(read).scalar_one()
                return found

        return self.state.call("recording a retirement", record)

    def expired(self) -> list[tuple[str, str]]:
        """(version, index) of retirements past their grace period whose index still exists."""
        t = self.state.retirements
        stmt = select(t.c.version, t.c.index_name).where(
            t.c.deleted_at.is_(None), t.c.delete_after <= func.now()
        )
        return [(v, i) for v, i in self.state.call("reading retirements", lambda: self._rows(stmt))]

    def mark_deleted(self, version: str) -> None:
        t = self.state.retirements
        done: Executable = t.update().where(t.c.version == version).values(deleted_at=func.now())
        self.state.call("recording a deleted index", partial(self._write, done))


def cut_over(records: MigrationRecords, version: IndexVersion[Any], alias: str, sink: Aliases) -> list[str]:
    """Point ``alias`` at the version's index in one atomic request, after restoring its serving
    settings. The same call rolls back: cut over to the previous version."""
    if version.key in records.retired():
        raise LifecycleRefused(f"version {version.key!r} is retired; it is no longer synced")
    latest = records.latest_validation(version.key)
    if latest is None:
        raise LifecycleRefused(
            f"version {version.key!r} has never been validated; validate it first "
            f"(`validate {version.key}` on the command line, the `validate` job or the partition's "
            "checks in Dagster)"
        )
    passed, report, at = latest
    if not passed:
        failed = "; ".join(f"{c['name']}: {c['description']}" for c in report["checks"] if not c["passed"])
        raise LifecycleRefused(
            f"version {version.key!r} failed validation at {at.isoformat()}: {failed}. "
            "Fix it (reconcile, replay dead letters, let it catch up) and validate again"
        )
    sink.finish_backfill([version])
    previous = sink.point_alias(alias, version.index)
    event("cut_over", version=version.key, alias=alias, index=version.index, previous=previous)
    return previous


def retire(
    records: MigrationRecords, version: IndexVersion[Any], alias: str, sink: Aliases, grace: timedelta
) -> datetime:
    """Stop syncing the version; its index is deleted once ``grace`` has passed."""
    if version.index in sink.alias_targets(alias):
        raise LifecycleRefused(
            f"version {version.key!r} is live behind alias {alias!r}; cut over to another "
            "version before retiring it"
        )
    delete_after = records.add_retirement(version, datetime.now(UTC) + grace)
    event("retired", version=version.key, index=version.index, delete_after=delete_after.isoformat())
    return delete_after


def delete_expired(records: MigrationRecords, sink: Aliases) -> list[str]:
    """Delete the indices of versions retired longer than their grace period."""
    due = records.expired()
    for version, index in due:
        sink.delete_index(index)
        records.mark_deleted(version)
    return [index for _, index in due]


def lifecycle_of(
    *, retired: bool, live: bool, validated: bool, cursor: Position | None, behind: bool
) -> Lifecycle:
    if retired:
        return Lifecycle.RETIRED
    if live:
        return Lifecycle.LIVE
    if cursor is None or behind:
        return Lifecycle.BUILDING
    return Lifecycle.READY if validated else Lifecycle.CATCHING_UP
