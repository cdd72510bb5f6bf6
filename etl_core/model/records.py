"""The values that flow between stages. Small, immutable, and cheap to build per row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from etl_core.model.cursor import Key, Position
from etl_core.model.snapshot import Snapshot

R = TypeVar("R")


class Change(NamedTuple, Generic[R]):
    """One document's worth of change: its key, its place in the change order, the external
    version its write carries, whether it is deleted, and the DTO (None when the row is gone)."""

    key: Key
    position: Position
    external: int
    deleted: bool
    record: R | None
    built: tuple[Any, ...] = ()
    """The row's SQL-built columns (:class:`etl_core.model.built.BuiltColumns`), when its lane has
    any: documents as JSON bytes, predicates as booleans."""


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    """The records of one query: the unit of extraction and of checkpointing.

    ``last`` is where the page ends in the change order, which a log page knows even when its
    entries resolve to no document. ``first_visit``: no key of this page can have been written
    earlier in the same run (true of a keyset walk below a fixed bound; a log page may revisit a
    key the run's backfill wrote). ``batch``: a log page's batch (its snapshot); the pages of
    one batch hold distinct root keys, in key order."""

    number: int
    changes: Sequence[Change[R]]
    last: Position
    first_visit: bool = True
    batch: object | None = None

    def overlap_group(self) -> object | None:
        """Pages of one group hold keys no other page of the group holds, so their writes may be
        on their way together: the pages of a walk by key (first visits), the pages of one log
        batch. None: this page must wait for every write before it."""
        return _FIRST_VISITS if self.first_visit else self.batch


_FIRST_VISITS = object()


class Action(NamedTuple):
    """One bulk operation. ``body`` is the document already serialised (orjson), or None.

    ``external_version`` None means "overwrite whatever is there": only repairs do that, and only
    while they hold the sync pool, so no newer write can race them."""

    version: str
    index_name: str
    op: Literal["index", "delete"]
    id: str
    external_version: int | None
    body: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record one version could not index, with the reason. Durable and replayable."""

    version: str
    key: str
    reason: str
    changed_at: datetime | None
    payload: Mapping[str, Any] | None


class Outcome(NamedTuple):
    """What OpenSearch said about one action, already classified."""

    action: Action
    status: Literal["indexed", "deleted", "not_found", "stale", "failed"]
    reason: str | None = None


@dataclass(slots=True)
class Counts:
    """What happened to one version's documents — one type for a page's share, a page's progress,
    a sync's totals and every report of them."""

    indexed: int = 0
    deleted: int = 0
    not_found: int = 0
    """Deletes with nothing to delete: known absent (a probe, or an index this run created) or
    answered 404. Counted apart so that ``deleted`` means documents that left the index."""
    stale: int = 0
    """Writes OpenSearch refused as older than the document it holds (external versions)."""
    dead_letters: int = 0

    def add(self, other: Counts) -> None:
        self.indexed += other.indexed
        self.deleted += other.deleted
        self.not_found += other.not_found
        self.stale += other.stale
        self.dead_letters += other.dead_letters

    def to_json(self) -> dict[str, int]:
        return {
            "indexed": self.indexed,
            "deleted": self.deleted,
            "not_found": self.not_found,
            "stale": self.stale,
            "dead_letters": self.dead_letters,
        }


@dataclass(slots=True)
class VersionBatch:
    """One version's share of one page: actions to send, and records that failed to transform."""

    version: str
    start: Position | None
    actions: list[Action] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    indexed: int = 0
    deleted: int = 0
    not_found: int = 0
    stale: int = 0
    written: list[str] = field(default_factory=list)
    """Ids this version wrote or deleted successfully: they resolve open dead letters."""

    def counts(self) -> Counts:
        return Counts(self.indexed, self.deleted, self.not_found, self.stale, len(self.dead_letters))


@dataclass(frozen=True, slots=True)
class RoutedPage(Generic[R]):
    page: Page[R]
    batches: Mapping[str, VersionBatch]


@dataclass(frozen=True, slots=True)
class VersionProgress:
    """Per version per page: the new cursor and what happened, after OpenSearch acknowledged."""

    version: str
    cursor: Position | None
    counts: Counts


@dataclass(frozen=True, slots=True)
class PageProgress:
    number: int
    rows: int
    last: Position
    versions: Mapping[str, VersionProgress]


@dataclass(frozen=True, slots=True)
class Shard:
    """One key range of a sharded backfill: keys above ``after`` up to ``until`` (inclusive;
    None: open-ended), walked under the plan's ``snapshot`` (taken once for all shards, which is
    also where the versions hand over to the change log)."""

    number: int
    count: int
    after: Any
    until: Any
    snapshot: Snapshot

    def key(self, version: str) -> str:
        """Where this shard's progress for a version is kept in the cursor store: named by the
        plan's snapshot rank, which tells two snapshots of one server apart."""
        xmax, xmin, open_ = self.snapshot.rank
        return f"{version}~shard{self.number}of{self.count}@{xmin}-{xmax}-{-open_}"


@dataclass(frozen=True, slots=True)
class Watermark:
    """``below``: where a run reads up to (a change column's exclusive bound, or the run's
    snapshot with change capture); ``now``: the server clock."""

    below: datetime | Snapshot
    now: datetime


@dataclass(frozen=True, slots=True)
class Lag:
    """How far each version is behind the source: committed changes not yet delivered to it, and
    the age of the oldest in seconds (``inf`` for a version that has never finished a walk)."""

    rows_behind: Mapping[str, int]
    seconds: Mapping[str, float]
    open_transactions: Sequence[Mapping[str, Any]] = ()
    """Transactions of the source's database holding an xid (kind, id: a pid or a prepared gid,
    database, user, state, xid, age_s): what may still arrive when they commit. They hold back
    nothing already committed."""
    log: Mapping[str, Any] | None = None
    """The change log's upkeep: ``bytes``, ``entries_estimate``, ``oldest_entry_age_s``
    (None when it is empty); None for a source without one."""

    def seconds_behind(self, version: str) -> float:
        return self.seconds.get(version, 0.0)
