"""In-memory stand-ins for the core's protocols, for unit tests of stages only."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from etl_core.errors import SinkUnavailable
from etl_core.model.cursor import Cursor, Position, lowest, merge
from etl_core.model.records import Action, DeadLetter, Outcome, Page, Shard, Watermark
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion
from etl_core.read.column_feed import normalise

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class MemoryCursorStore:
    def __init__(self) -> None:
        self.cursors: dict[str, Position] = {}
        self.saves: list[dict[str, Position]] = []

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]:
        return {v: self.cursors.get(v) for v in versions}

    def save(self, cursors: Mapping[str, Position]) -> None:
        self.saves.append(dict(cursors))
        for k, c in cursors.items():
            merged = merge(self.cursors.get(k), c)
            assert merged is not None
            self.cursors[k] = merged


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.resolved: list[tuple[str, str]] = []

    def put(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)

    def open_keys(self, versions: Iterable[str]) -> dict[str, set[str]]:
        wanted = set(versions)
        found: dict[str, set[str]] = {v: set() for v in wanted}
        for d in self.letters:
            if d.version in wanted and (d.version, d.key) not in self.resolved:
                found[d.version].add(d.key)
        return found

    def resolve(self, version: str, keys: Sequence[str]) -> None:
        self.resolved.extend((version, k) for k in keys)

    def count_open(self, version: str) -> int:
        return len(self.open_keys([version])[version])


@dataclass
class MemorySink:
    """Keeps documents per index with external_gte semantics; can be told to fail."""

    docs: dict[str, dict[str, tuple[int | None, bytes]]] = field(default_factory=dict)
    reject: set[tuple[str, str]] = field(default_factory=set)
    fail_on_write: int | None = None
    writes: int = 0
    deletes: int = 0
    probes: int = 0
    finished: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def ensure_indices(self, versions: Sequence[IndexVersion[Any]]) -> set[str]:
        created = {v.key for v in versions if v.index not in self.docs}
        for v in versions:
            self.docs.setdefault(v.index, {})
        return created

    def existing(self, index: str, ids: Sequence[str]) -> set[str]:
        self.probes += 1
        return {i for i in ids if i in self.docs.get(index, {})}

    def finish_backfill(self, version: IndexVersion[Any]) -> None:
        self.finished.append(version.key)

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        with self._lock:  # writes may run in several threads (in_flight): one at a time here
            return self._write(actions)

    def _write(self, actions: Sequence[Action]) -> list[Outcome]:
        self.writes += 1
        if self.fail_on_write is not None and self.writes >= self.fail_on_write:
            raise SinkUnavailable("memory sink told to fail")
        out = []
        for a in actions:
            index = self.docs.setdefault(a.index_name, {})
            if (a.version, a.id) in self.reject:
                out.append(Outcome(a, "failed", "mapper_parsing_exception: rejected"))
                continue
            held = index.get(a.id, (None, b""))[0]
            if held is not None and a.external_version is not None and held > a.external_version:
                out.append(Outcome(a, "stale"))
            elif a.op == "delete":
                self.deletes += 1
                out.append(Outcome(a, "deleted" if index.pop(a.id, None) else "not_found"))
            else:
                assert a.body is not None
                index[a.id] = (a.external_version, a.body)
                out.append(Outcome(a, "indexed"))
        return out


@dataclass
class ListExtractor:
    """Serves pages from an in-memory table, counting queries like the real extractor."""

    source: Source[Any]
    table: list[tuple[Any, ...]]
    page_size: int = 2
    below: datetime = field(default_factory=lambda: at(10_000))
    statements: int = 0
    rows: int = 0
    drained: bool = False
    truncated: set[str] = field(default_factory=set)

    def watermark(self) -> Watermark:
        self.statements += 1
        return Watermark(self.below, self.below)

    def changes(
        self, starts: Mapping[str, Position | None], head: Watermark, shard: Shard | None = None
    ) -> Iterator[Page[Any]]:
        assert shard is None, "the list extractor serves a source with a change column only"
        start = lowest(list(starts.values()))
        assert isinstance(head.below, datetime)
        return normalise(self.source, self.pages(start if isinstance(start, Cursor) else None, head.below))

    def pages(self, after: Cursor | None, below: datetime) -> Iterator[list[tuple[Any, ...]]]:
        fields = self.source.fields
        ci, ki = fields.index(self.source.changed_column), fields.index(self.source.key)
        ordered = sorted((r for r in self.table if r[ci] < below), key=lambda r: (r[ci], r[ki]))
        if after is not None:
            ordered = [r for r in ordered if (r[ci], r[ki]) > tuple(after)]
        start = 0
        while True:
            self.statements += 1
            page = ordered[start : start + self.page_size]
            self.rows += len(page)
            if len(page) < self.page_size:
                self.drained = True  # as the real feed: known before the last page is handed on
            if page:
                yield page
            if self.drained:
                return
            start += self.page_size
