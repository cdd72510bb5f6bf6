"""Positions in the source's change order, and the rules that keep them monotonic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

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


def merge(a: Cursor | None, b: Cursor | None) -> Cursor | None:
    """Two writers may race on one version's cursor; the later position always wins."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def lowest(cursors: list[Cursor | None]) -> Cursor | None:
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
