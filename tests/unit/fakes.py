"""In-memory stand-ins for the core's protocols, for unit tests of stages only."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from etl_core.errors import SinkUnavailable
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Cursor, Position, lowest, merge
from etl_core.model.records import Action, DeadLetter, Lag, Outcome, Page, Shard, Watermark
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion
from etl_core.read.column_feed import normalise
from etl_core.state.lanes import LaneBusy

if TYPE_CHECKING:
    from etl_core.operations.validation import ValidationReport

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class MemoryCursorStore:
    def __init__(self) -> None:
        self.cursors: dict[str, Position] = {}
        self.saves: list[dict[str, Position]] = []

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]:
        return {v: self.cursors.get(v) for v in versions}

    def versions(self) -> list[str]:
        return sorted(self.cursors)

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

    def finish_backfill(
        self, versions: Sequence[IndexVersion[Any]], changed: Collection[str] | None = None
    ) -> None:
        self.finished.extend(v.key for v in versions)

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
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[Any]]:
        assert shard is None, "the list extractor serves a source with a change column only"
        assert not built, "documents built in SQL need PostgreSQL (tests/integration/test_sql_documents.py)"
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


# --- Read-back stand-ins: what reconciliation, validation, replay and the migration steps need ---
# (used by the orchestration unit tests' fake engine, tests/unit/orchestration/fake_services.py)

_NOWHERE = Cursor(datetime(9999, 1, 1, tzinfo=UTC), 0)


@dataclass
class TableExtractor(ListExtractor):
    """A :class:`ListExtractor` that also answers what the operations ask of
    :class:`etl_core.read.extract.Extractor` outside a sync, as its change-column feed does."""

    def _ordered(self) -> list[tuple[Any, ...]]:
        fields = self.source.fields
        ci, ki = fields.index(self.source.changed_column), fields.index(self.source.key)
        return sorted(self.table, key=lambda r: (r[ci], r[ki]))

    def _position(self, row: tuple[Any, ...]) -> Cursor:
        fields = self.source.fields
        return Cursor(row[fields.index(self.source.changed_column)], row[fields.index(self.source.key)])

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag:
        self.statements += 1
        positions = [self._position(r) for r in self._ordered()]
        head = positions[-1] if positions else None
        by_time = {k: c if isinstance(c, Cursor) else None for k, c in cursors.items()}
        behind = {k: sum(c is None or p > c for p in positions) for k, c in by_time.items()}
        return Lag(behind, {k: _seconds(head, c) for k, c in by_time.items()})

    def head(self) -> str | None:
        rows = self._ordered()
        return self._position(rows[-1]).describe() if rows else None

    def count(self) -> int:
        return len(self.table)

    def pending(self, after: Position | None) -> bool:
        return False  # a change column has no queue to look into

    def trim(self, cursors: Sequence[Position | None]) -> int:
        return 0  # nothing is kept on the source's side

    def walk(self) -> Iterator[Page[Any]]:
        self.drained = False  # a walk after a sync on the same reader starts afresh
        return normalise(self.source, self.pages(None, _NOWHERE.changed_at))

    def existing(self, keys: list[Any]) -> list[Any]:
        ki = self.source.fields.index(self.source.key)
        present = {r[ki] for r in self.table}
        return [k for k in keys if k in present]

    def by_keys(self, keys: list[Any]) -> Page[Any]:
        ki = self.source.fields.index(self.source.key)
        found = [r for r in self._ordered() if r[ki] in set(keys)]
        return next(normalise(self.source, iter([found]))) if found else Page(1, [], _NOWHERE)


def _seconds(head: Cursor | None, cursor: Cursor | None) -> float:
    if head is None:
        return 0.0
    if cursor is None:
        return float("inf")
    return max(0.0, (head.changed_at - cursor.changed_at).total_seconds())


@dataclass
class MemoryIndex(MemorySink):
    """A :class:`MemorySink` that can be read back and has aliases (``SearchIndex`` and ``Aliases``)."""

    aliases: dict[str, list[str]] = field(default_factory=dict)
    deleted_indices: list[str] = field(default_factory=list)

    def fetch(self, index: str, ids: Sequence[str]) -> dict[str, tuple[int, Any]]:
        held = self.docs.get(index, {})
        return {i: (held[i][0] or 0, orjson.loads(held[i][1])) for i in ids if i in held}

    def scan_ids(self, index: str, batch: int = 1000) -> Iterator[list[tuple[str, int]]]:
        ids = [(i, v or 0) for i, (v, _) in self.docs.get(index, {}).items()]
        for start in range(0, len(ids), batch):
            yield ids[start : start + batch]

    def alias_targets(self, alias: str) -> list[str]:
        return sorted(self.aliases.get(alias, []))

    def point_alias(self, alias: str, index: str) -> list[str]:
        before = self.alias_targets(alias)
        self.aliases[alias] = [index]
        return before

    def delete_index(self, index: str) -> bool:
        self.deleted_indices.append(index)
        return self.docs.pop(index, None) is not None

    def document(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The document as the index holds it (parsed), or None."""
        held = self.docs.get(index, {}).get(doc_id)
        return None if held is None else dict(orjson.loads(held[1]))


class MemoryLetterStore(MemoryDeadLetters):
    """:class:`MemoryDeadLetters` as the state table keeps them: one open letter per (version, key),
    reopened by a later failure, and listed for replay (``open_letters``)."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        failed = {(d.version, d.key) for d in letters}
        self.resolved = [r for r in self.resolved if r not in failed]
        super().put(letters)

    def open_letters(self, version: str | None = None) -> list[dict[str, Any]]:
        latest = {(d.version, d.key): d for d in self.letters if (d.version, d.key) not in self.resolved}
        return [
            {"version": v, "key": k, "reason": d.reason}
            for (v, k), d in sorted(latest.items())
            if version is None or v == version
        ]


@dataclass
class MemoryRecords:
    """:class:`etl_core.operations.lifecycle.MigrationRecords` in memory: validations and retirements."""

    validations: dict[str, list[tuple[bool, dict[str, Any], datetime]]] = field(default_factory=dict)
    retired_at: dict[str, datetime] = field(default_factory=dict)
    indices: dict[str, str] = field(default_factory=dict)
    delete_after: dict[str, datetime] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def record(self, report: ValidationReport) -> datetime:
        entry = (report.passed, report.to_json(), datetime.now(UTC))
        self.validations.setdefault(report.version, []).append(entry)
        return entry[2]

    def latest_validation(self, version: str) -> tuple[bool, dict[str, Any], datetime] | None:
        found = self.validations.get(version)
        return found[-1] if found else None

    def latest_outcomes(self) -> dict[str, bool]:
        return {v: found[-1][0] for v, found in self.validations.items() if found}

    def retired(self) -> set[str]:
        return set(self.retirements())

    def retirements(self) -> dict[str, datetime]:
        return dict(self.retired_at)

    def add_retirement(self, version: IndexVersion[Any], delete_after: datetime) -> datetime:
        if version.key not in self.retired_at:  # as the table's ON CONFLICT DO NOTHING
            self.retired_at[version.key] = datetime.now(UTC)
            self.indices[version.key] = version.index
            self.delete_after[version.key] = delete_after
        return self.delete_after[version.key]

    def expired(self) -> list[tuple[str, str]]:
        now = datetime.now(UTC)
        return [
            (v, self.indices[v])
            for v, after in self.delete_after.items()
            if v not in self.deleted and after <= now
        ]

    def mark_deleted(self, version: str) -> None:
        self.deleted.add(version)


@dataclass
class MemoryLaneLock:
    """:class:`etl_core.state.lanes.PostgresLaneLock` in one process: one exclusive holder of a
    version's index, or any number of shared ones; anything else is refused at once."""

    holders: dict[str, list[bool]] = field(default_factory=dict)
    """Index → the holders' ``shared`` flags."""
    taken: list[tuple[str, ...]] = field(default_factory=list)
    """Every hold that was granted: the version keys, in order."""

    @contextmanager
    def hold(self, versions: Sequence[IndexVersion[Any]], *, shared: bool = False) -> Iterator[None]:
        for v in versions:
            held = self.holders.get(v.index, [])
            if held and not (shared and all(held)):
                raise LaneBusy(
                    f"version {v.key!r} is being synced by another process (in-memory holder); "
                    "wait for it to finish, or stop it"
                )
        for v in versions:
            self.holders.setdefault(v.index, []).append(shared)
        self.taken.append(tuple(v.key for v in versions))
        try:
            yield
        finally:
            for v in versions:
                self.holders[v.index].remove(shared)
                if not self.holders[v.index]:
                    del self.holders[v.index]
