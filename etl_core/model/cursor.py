"""Positions in the source's change order, and the rules that keep them monotonic.

Two kinds, one per way a source captures changes: :class:`Cursor` for a trusted change column,
:class:`LogCursor` for a source with generated change capture (:mod:`etl_core.capture.triggers`). A
version's positions are always of its source's kind; both are ordered, so ``max`` is the merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import total_ordering
from typing import Any, NamedTuple, TypeVar

from etl_core.model.construct import positional
from etl_core.model.snapshot import Snapshot

Key = int | str


class Cursor(NamedTuple):
    """A position ``(changed_at, key)``: tuples order exactly like the keyset ``ORDER BY``."""

    changed_at: datetime
    key: Key

    def to_json(self) -> dict[str, str | int]:
        return {"changed_at": self.changed_at.isoformat(), "key": self.key}

    @classmethod
    def from_json(cls, data: dict[str, str | int]) -> Cursor:
        return cls(datetime.fromisoformat(str(data["changed_at"])), data["key"])

    def describe(self) -> str:
        return f"{self.changed_at.isoformat()} / {self.key}"


BACKFILL, LOG = 0, 1
_NO_KEY: tuple[int] = (0,)


@total_ordering
@dataclass(frozen=True, slots=True, eq=True)
class LogCursor:
    """A position in a source with change capture.

    While a version is backfilled it walks the source by key under the snapshot taken when the
    walk began: ``backfill(last key, snapshot)``. Every change that snapshot sees is in what the
    walk reads; the walk hands over to the change log *at* that snapshot: ``done(snapshot)``.
    From then on the log is read in snapshot deltas (:mod:`etl_core.model.snapshot`): a batch toward a
    newer snapshot ``B`` is delivered in pages of root keys, ``in_batch(A, B, last key)``, and
    ends at ``done(B)``.

    Positions order like the reads: every backfill position before every log position; within
    the log by the batch's snapshot, a batch's pages by key before the batch's end. The snapshot a
    batch started from (``A``) takes no part in the order: it only says where the batch's delta
    begins, so a killed run resumes the very same batch.
    """

    phase: int
    snapshot: Snapshot
    """Backfill: the walk's snapshot. Log: the last batch delivered whole."""
    key: Key | None = None
    """Backfill: the last key walked. In a batch: the last root key delivered."""
    batch: Snapshot | None = None
    """The batch in progress (its snapshot), or None between batches."""

    @classmethod
    def backfill(cls, key: Key, snapshot: Snapshot) -> LogCursor:
        return _build(BACKFILL, snapshot, key, None)  # one per row walked: the fast constructor

    @classmethod
    def done(cls, snapshot: Snapshot) -> LogCursor:
        return cls(LOG, snapshot)

    @classmethod
    def in_batch(cls, since: Snapshot, batch: Snapshot, key: Key) -> LogCursor:
        return _build(LOG, since, key, batch)  # one per key of a log page

    @property
    def backfilling(self) -> bool:
        return self.phase == BACKFILL

    def hand_over(self) -> LogCursor:
        """Where the log is followed from once this backfill is complete."""
        return self if not self.backfilling else LogCursor.done(self.snapshot)

    @property
    def since(self) -> Snapshot:
        """Every change this snapshot sees has been delivered (for a backfill: once it hands over)."""
        return self.snapshot

    def order(self) -> tuple[Any, ...]:
        """The sort key; the cursor store keeps the same order in SQL (:meth:`rank_columns`)."""
        head, key, tail = self.rank_columns()
        return (*head, _NO_KEY if key is None else (1, key), *tail)

    def rank_columns(self) -> tuple[list[int], Key | None, list[int]]:
        """``(head, key, tail)``: compared in that order, lexicographically, they order cursors.
        The cursor store compares them in PostgreSQL so that a save is a monotonic merge."""
        if self.backfilling:
            return [BACKFILL], self.key, list(self.snapshot.rank)
        if self.batch is None:
            return [LOG, *self.snapshot.rank, 1], None, []
        return [LOG, *self.batch.rank, 0], self.key, []

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, LogCursor):
            return NotImplemented
        return self.order() < other.order()

    def to_json(self) -> dict[str, Any]:
        if self.backfilling:
            return {"backfill_key": self.key, "snapshot": str(self.snapshot)}
        if self.batch is None:
            return {"snapshot": str(self.snapshot)}
        return {"snapshot": str(self.snapshot), "batch": str(self.batch), "key": self.key}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogCursor:
        """Also reads the positions of the xmin-bounded reader that came before (``bound``,
        ``xid``): as snapshots that see every xid below them, so at worst a few entries are
        delivered again, never skipped."""
        if "backfill_key" in data:
            if "snapshot" in data:
                return cls.backfill(data["backfill_key"], Snapshot.parse(data["snapshot"]))
            return cls.backfill(data["backfill_key"], Snapshot.below(int(data["bound"])))
        if "xid" in data:
            return cls.done(Snapshot.below(int(data["xid"])))
        since = Snapshot.parse(data["snapshot"])
        if data.get("batch") is None:
            return cls.done(since)
        return cls.in_batch(since, Snapshot.parse(data["batch"]), data["key"])

    def describe(self) -> str:
        if self.backfilling:
            return f"backfill at key {self.key} (log from snapshot {self.snapshot})"
        if self.batch is None:
            return f"log at snapshot {self.snapshot}"
        return f"log batch {self.snapshot} -> {self.batch} at key {self.key}"


Position = Cursor | LogCursor


P = TypeVar("P", bound="Cursor | LogCursor")


def position_from_json(data: dict[str, Any]) -> Position:
    return LogCursor.from_json(data) if "changed_at" not in data else Cursor.from_json(data)


def merge(a: P | None, b: P | None) -> P | None:
    """Two writers may race on one version's cursor; the later position always wins."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def lowest(cursors: Sequence[P | None]) -> P | None:
    """Where a lane's extraction starts: at the slowest version (``None`` = from the beginning)."""
    if not cursors or any(c is None for c in cursors):
        return None
    return min(c for c in cursors if c is not None)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def external_version(changed_at: datetime) -> int:
    """OpenSearch external version: microseconds since the epoch of the change column.

    Derived from the data, not from the run, so a replayed or late write carries the same or an
    older version and ``external_gte`` refuses to let it overwrite newer content.
    """
    if changed_at.tzinfo is None:  # a ``timestamp without time zone`` column: read it as UTC
        changed_at = changed_at.replace(tzinfo=UTC)
    delta = changed_at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_build = positional(LogCursor)
