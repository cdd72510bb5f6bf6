"""Every operation on a source's versions, written once: which versions, the lane lock, the record.

The command line (:mod:`etl_core.cli`) and the Dagster jobs (``orchestration``) are thin adapters
over :class:`Operations`: they parse what the user asked for, call one method, and print or
record what it returns. So the rules cannot differ between the two doors:

- *Which versions*: the ones named, in declaration order, or every one not retired; a retired
  version named by a command is refused at once, saying since when it is retired.
- *The lane lock*: everything that writes documents — sync, follow, cut-over, retire, replay,
  reconcile — holds the lock of the versions it touches (:mod:`etl_core.state.lanes`) for its whole
  duration, so a cut-over never swaps the alias under a sync still writing the old index, and a
  replay's or a repair's fresh document is never overwritten by a sync's older one. A second
  writer fails at once with :class:`~etl_core.state.lanes.LaneBusy` naming the holder.
- *The record*: validations and retirements go to the source's state tables
  (:class:`~etl_core.operations.lifecycle.MigrationRecords`), which both doors read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from etl_core.capture.triggers import Tracking
from etl_core.errors import ConfigError, SourceUnavailable
from etl_core.flow.follow import FollowResult, Listener, follow
from etl_core.flow.pipeline import SyncResult, sync
from etl_core.logs import event
from etl_core.model.cursor import lowest
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion, pick
from etl_core.operations.connect import Connections
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.lifecycle import MigrationRecords, cut_over, delete_expired, retire
from etl_core.operations.reconcile import Drift, reconcile
from etl_core.operations.replay import ReplayResult, replay_dead_letters
from etl_core.operations.status import VersionStatus, describe_versions
from etl_core.operations.validation import Thresholds, ValidationReport, validate
from etl_core.retry import refused_connection, transient_db_error


class VersionRetired(ConfigError):
    """A command named a version that is retired: it is no longer synced, replayed or repaired."""


@dataclass
class Operations:
    """One source's operations over its declared ``versions`` (prefixed), its read alias
    ``alias`` (prefixed; default the source's) and the services of ``conns``."""

    conns: Connections
    source: Source[Any]
    versions: Sequence[IndexVersion[Any]] = ()
    alias: str = ""
    records: MigrationRecords = field(init=False)

    def __post_init__(self) -> None:
        if self.source.name != self.conns.scope:
            raise ConfigError(
                f"these connections keep the state of source {self.conns.scope!r}, not "
                f"{self.source.name!r}: open Connections(settings, {self.source.name!r}) for it"
            )
        self.alias = self.alias or self.source.read_alias
        self.records = self.conns.records

    # --- which versions ---

    def chosen(self, only: Sequence[str] = ()) -> list[IndexVersion[Any]]:
        """The versions named (all declared when none), leaving out the retired ones; a retired
        version named explicitly is refused, with the date it was retired."""
        picked = pick(self.versions, only)
        retired = self.records.retirements()
        named = [v for v in picked if only and (v.key in retired or v.retired)]
        if named:
            raise self._retired(named, retired)
        return [v for v in picked if v.key not in retired and not v.retired]

    def version(self, key: str) -> IndexVersion[Any]:
        """One declared version, retired or not."""
        (found,) = pick(self.versions, [key])
        return found

    def active(self, key: str) -> IndexVersion[Any]:
        """One declared version that is not retired: validating or cutting over a retired one
        is refused at once (its index may be gone), saying since when."""
        (found,) = self.chosen([key])
        return found

    def _retired(self, gone: Sequence[IndexVersion[Any]], retired: dict[str, datetime]) -> VersionRetired:
        since = ", ".join(
            f"{v.key} is retired (since {retired[v.key].isoformat(timespec='seconds')})"
            if v.key in retired
            else f"{v.key} is retired (in code: IndexVersion(retired=True))"
            for v in gone
        )
        left = [v.key for v in self.versions if v.key not in retired and not v.retired]
        return VersionRetired(f"{since}; it is no longer synced. Not retired: {left}")

    # --- writing documents: each holds the lane lock of what it writes ---

    @contextmanager
    def _writing(
        self, versions: Sequence[IndexVersion[Any]], also_locked: Sequence[IndexVersion[Any]] = ()
    ) -> Iterator[None]:
        """The lane lock of ``versions`` (and ``also_locked``), then — under it, so a retirement
        that landed meanwhile counts — the refusal of a retired one: a run queued before a
        retirement, or a partition left over, must not write (or re-create) its index. No
        versions at all is refused too: a sync of none would walk the source for nothing."""
        if not versions:
            raise ConfigError(
                f"source {self.source.name!r}: no version to write (every declared one is retired?)"
            )
        with self.conns.lanes.hold([*versions, *also_locked]):
            retired = self.records.retirements()
            gone = [v for v in versions if v.key in retired or v.retired]
            if gone:
                raise self._retired(gone, retired)
            yield

    def sync(self, versions: Sequence[IndexVersion[Any]], **kwargs: Any) -> SyncResult:
        """:func:`etl_core.sync` as the versions' only writer; any argument may be overridden."""
        with self._writing(versions):
            return self._sync(versions, **kwargs)

    def _sync(self, versions: Sequence[IndexVersion[Any]], **kwargs: Any) -> SyncResult:
        conns = self.conns
        kwargs.setdefault("extractor", conns.extractor(self.source))
        kwargs.setdefault("sink", conns.sink)
        kwargs.setdefault("dead_letters", conns.dead_letters)
        kwargs.setdefault("cursors", conns.cursors)
        kwargs.setdefault("in_flight", conns.settings.bulk_in_flight)
        result = sync(versions, exclusive=True, **kwargs)
        if result.truncated:
            self._after_truncate(versions, result)
        return result

    def _after_truncate(self, versions: Sequence[IndexVersion[Any]], result: SyncResult) -> None:
        """A delivered TRUNCATE names no key: reconcile the lane's versions with the source at
        once (orphans deleted, changed documents rewritten), still holding the lane lock."""
        drifts = reconcile(
            versions,
            self.conns.extractor(self.source),
            self.conns.sink,
            repair=True,
            dead_letters=self.conns.dead_letters,
        )
        event(
            "truncate_reconciled",
            tables=list(result.truncated),
            **{f"{k}_repaired": d.repaired for k, d in drifts.items()},
        )

    def follow(
        self,
        versions: Sequence[IndexVersion[Any]],
        *,
        window_s: float,
        debounce_s: float = 0.05,
        idle_s: float | None = None,
        keep_results: bool = False,
        **kwargs: Any,
    ) -> FollowResult:
        """Sync on every commit's notification until ``window_s`` has passed, holding the lane
        lock throughout. Needs a source with tracking."""
        if self.source.tracking is None:
            raise ConfigError(
                f"source {self.source.name!r} has no tracking to follow; declare tracking=Tracking(...)"
            )
        extractor = kwargs.pop("extractor", None) or self.conns.extractor(self.source)
        listener = Listener(self.conns.source_engine.url, self.source.tracking.channel, self.conns.backoff)

        def pending(result: SyncResult) -> bool:
            return extractor.pending(lowest([t.cursor for t in result.versions.values()]))

        try:
            with self._writing(versions):
                return follow(
                    lambda: self._sync(versions, extractor=extractor, **kwargs),
                    listener,
                    window_s=window_s,
                    debounce_s=debounce_s,
                    idle_s=self.conns.settings.follow_poll_s if idle_s is None else idle_s,
                    pending=pending,
                    keep_results=keep_results,
                )
        finally:
            listener.close()

    def cut_over(self, key: str) -> list[str]:
        """Point the read alias at a validated version; the indices it named before."""
        version = self.active(key)
        # the version behind the alias now is locked too: no sync of it may still be writing
        # when readers move away from it (or back to it, for a rollback)
        live = set(self.conns.sink.alias_targets(self.alias))
        behind = [v for v in self.versions if v.index in live and v.key != version.key]
        with self._writing([version], also_locked=behind):
            return cut_over(self.records, version, self.alias, self.conns.sink)

    def retire(self, key: str, grace: timedelta) -> datetime:
        """Stop syncing a version; when its index may be deleted."""
        version = self.version(key)
        with self.conns.lanes.hold([version]):
            return retire(self.records, version, self.alias, self.conns.sink, grace)

    def replay(self, only: Sequence[str] = ()) -> dict[str, ReplayResult]:
        chosen = self.chosen(only)
        with self._writing(chosen):
            return replay_dead_letters(
                chosen,
                extractor=self.conns.extractor(self.source),
                sink=self.conns.sink,
                dead_letters=self.conns.dead_letters,
            )

    def reconcile(self, only: Sequence[str] = (), *, repair: bool) -> tuple[dict[str, Drift], list[str]]:
        """Each version's drift (repaired unless ``repair`` is false) and, when repairing, the
        indices of retired versions past their grace period, deleted."""
        chosen = self.chosen(only)
        with self._writing(chosen):  # repairs overwrite: no sync may write meanwhile
            drifts = reconcile(
                chosen,
                self.conns.extractor(self.source),
                self.conns.sink,
                repair=repair,
                dead_letters=self.conns.dead_letters,
            )
        deleted = delete_expired(self.records, self.conns.sink) if repair else []
        return drifts, deleted

    # --- reading and recording ---

    def trim(self) -> int:
        """Delete the change-log entries that every version not retired has been delivered; how
        many. Every version means the declared ones *and* every one with a cursor in the state
        table: a command line run with a shorter ``--versions`` list (or an old release beside a
        new one) must not delete what another door's version has not read yet."""
        retired = self.records.retired()
        keys = {v.key for v in self.versions if not v.retired} | set(self.conns.cursors.versions())
        active = sorted(k for k in keys if k not in retired)
        cursors = self.conns.cursors.load(active)
        return self.conns.extractor(self.source).trim([cursors[k] for k in active])

    def validate(self, key: str, thresholds: Thresholds) -> tuple[ValidationReport, datetime]:
        """Compare every document of the version with the source, and record the outcome: the
        report and when it was recorded (the one record every cut-over reads)."""
        report = validate(
            self.active(key),
            extractor=self.conns.extractor(self.source),
            sink=self.conns.sink,
            dead_letters=self.conns.dead_letters,
            cursors=self.conns.cursors,
            thresholds=thresholds,
        )
        return report, self.records.record(report)

    def status(self, close: CloseEnough) -> dict[str, Any]:
        cursors = self.conns.cursors.load(v.key for v in self.versions)
        lag = self.conns.extractor(self.source).lag(cursors)
        statuses: list[VersionStatus] = describe_versions(
            self.versions,
            cursors=cursors,
            lag=lag,
            records=self.records,
            dead_letters=self.conns.dead_letters,
            sink=self.conns.sink,
            alias=self.alias,
            close=close,
        )
        return {
            "source": self.source.name,
            "alias": self.alias,
            "state": self.conns.describe_state(),
            "versions": [s.to_json() for s in statuses],
            # what may still arrive when it commits; it holds back nothing committed
            "open_transactions": list(lag.open_transactions),
            "change_log": lag.log,
        }


def tracking_action(
    source: Source[Any], engine: Engine, action: str, *, force: bool = False, variable: str = ""
) -> dict[str, Any]:
    """``apply``, ``remove`` or ``status`` of a source's generated change capture, as the role of
    ``engine`` (one that owns the tracked tables); what is installed afterwards, and the triggers
    that are disabled (changes they should log are lost). A refusal names the fix."""
    tracking: Tracking = _tracking_of(source)
    variable = variable or "TRACKING_DATABASE_URL"
    try:
        if action == "apply":
            tracking.apply(engine)
        elif action == "remove":
            tracking.remove(engine, force=force)
        elif action != "status":
            raise ConfigError(f"tracking action {action!r}: choose plan, apply, remove or status")
        return {
            "source": source.name,
            "action": action,
            "installed": tracking.installed(engine),
            "disabled_triggers": tracking.disabled(engine),
        }
    except DBAPIError as exc:
        refused = refused_connection(exc, variable)
        if refused is not None:
            raise refused from None
        if transient_db_error(exc):
            raise SourceUnavailable(
                f"PostgreSQL could not be reached to {action} the tracking of {source.name!r}: "
                f"{type(exc.orig).__name__}"
            ) from None
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ""
        raise ConfigError(
            f"PostgreSQL refused the tracking DDL of {source.name!r} ({type(exc.orig).__name__}: {first}). "
            "Apply it as a role that owns the tracked tables (set TRACKING_DATABASE_URL), or hand "
            "`tracking plan` to your DBA"
        ) from None


def _tracking_of(source: Source[Any]) -> Tracking:
    if source.tracking is None:
        raise ConfigError(
            f"source {source.name!r} declares no tracking; add tracking=Tracking(...) to use change capture"
        )
    return source.tracking
