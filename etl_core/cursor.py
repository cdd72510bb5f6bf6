"""Positions in the source's change order, and the rules that keep them monotonic.

Two kinds, one per way a source captures changes: :class:`Cursor` for a trusted change column,
:class:`LogCursor` for a source with generated change capture (:mod:`etl_core.tracking`). A
version's positions are always of its source's kind; both are tuples, so ``max`` is the merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

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


class LogCursor(NamedTuple):
    """A position in a source with change capture.

    While a version is backfilled it walks the source by key: ``(0, last key, bound)``, where
    ``bound`` is the snapshot xmin taken when the backfill began; every change below it is in
    what the walk reads. Then it follows the change log: ``(1, xid, seq)`` of the last entry
    read. Tuples order like the reads: every backfill position comes before every log position,
    and the hand-over from one to the other is ``(1, bound, 0)``: the first entry at the bound.
    """

    phase: int
    major: Any
    """The last key read (backfill) or the last entry's transaction id (log)."""
    minor: int
    """The backfill's bound, or the last entry's sequence number."""

    @classmethod
    def backfill(cls, key: Key, bound: int) -> LogCursor:
        return cls(BACKFILL, key, bound)

    @classmethod
    def log(cls, xid: int, seq: int) -> LogCursor:
        return cls(LOG, xid, seq)

    @property
    def backfilling(self) -> bool:
        return self.phase == BACKFILL

    def hand_over(self) -> LogCursor:
        """Where the log is followed from once this backfill is complete."""
        return self if not self.backfilling else LogCursor.log(self.minor, 0)

    def to_json(self) -> dict[str, Any]:
        if self.backfilling:
            return {"backfill_key": self.major, "bound": self.minor}
        return {"xid": self.major, "seq": self.minor}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogCursor:
        if "backfill_key" in data:
            return cls.backfill(data["backfill_key"], int(data["bound"]))
        return cls.log(int(data["xid"]), int(data["seq"]))

    def describe(self) -> str:
        if self.backfilling:
            return f"backfill at key {self.major} (log from xid {self.minor})"
        return f"log at xid {self.major} seq {self.minor}"


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
