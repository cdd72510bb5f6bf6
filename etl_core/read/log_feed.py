"""The change feed of a source with generated change capture: walk by key, then snapshot deltas.

A new version walks the source by key under the snapshot taken when it began, then hands over to
the change log at that snapshot. From there the log is read in batches: every entry the current
snapshot sees and the last batch's did not (:mod:`etl_core.model.snapshot`, statements in
:mod:`etl_core.capture.statements`), resolved to its distinct root keys and delivered a page of keys at a
time. Nothing open elsewhere on the server holds back what has committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import DBAPIError

from etl_core.capture.statements import (
    SNAPSHOT,
    backfill_statement,
    log_keys_statement,
    log_lag_statement,
    log_page_statement,
    log_rows_statement,
    pending_statement,
    snapshot_statement,
    trim_statement,
)
from etl_core.capture.triggers import Tracking
from etl_core.errors import SourceRefused, SourceUnavailable
from etl_core.logs import event
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.construct import positional
from etl_core.model.cursor import Key, LogCursor, Position
from etl_core.model.records import Change, Lag, Page, Shard, Watermark
from etl_core.model.snapshot import Snapshot, earliest
from etl_core.model.source import Source
from etl_core.retry import call_with_retry, refused_connection, server_message, transient_db_error

if TYPE_CHECKING:
    from etl_core.read.extract import Extractor

R = TypeVar("R")

PAGES_OF_KEYS = 50
"""How many pages' worth of root keys one :func:`log_keys_statement` resolves: 50 000 keys,
about 2 MB in memory, at the default page size."""


@dataclass(frozen=True, slots=True)
class RawPage:
    """What one capture statement returned, before normalisation."""

    kind: Literal["backfill", "hand_over", "log"]
    rows: Sequence[Any]
    last: LogCursor
    read: Snapshot
    """The snapshot the statement read under: its documents' external version."""
    batch: Snapshot | None = None
    """A log page's batch: its changes stand at their key in it."""


class LogFeed(Generic[R]):
    def __init__(self, reader: Extractor[R], tracking: Tracking) -> None:
        self.reader = reader
        self.source: Source[R] = reader.source
        self.tracking = tracking

    def head(self) -> Watermark:
        row = self.reader.run("snapshot", snapshot_statement())[0]
        return Watermark(below=Snapshot.parse(row[0]), now=row[1])

    def changes(
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[R]]:
        """A lane's pages from where its versions stand; for ``shard``, that shard's key range
        under the plan's snapshot, without a hand-over (``starts`` are the shard's own)."""
        if shard is None:
            assert isinstance(head.below, Snapshot)
            return normalise_capture(self.source, self.pages(*capture_start(starts, head.below), built=built))
        positions = [c for c in starts.values() if isinstance(c, LogCursor)]
        begun = min(positions) if len(positions) == len(starts) else None
        if begun is not None and not begun.backfilling:
            return iter(())  # this shard is done (it handed over): nothing to walk
        first = LogCursor.backfill(shard.after, shard.snapshot) if shard.after is not None else None
        raw = self.pages(begun or first, shard.snapshot, until=shard.until, hand_over=False, built=built)
        return normalise_capture(self.source, raw)

    def pages(
        self,
        after: LogCursor | None,
        snapshot: Snapshot,
        follow_from: LogCursor | None = None,
        *,
        head: Snapshot | None = None,
        log: bool = True,
        until: Any = None,
        hand_over: bool = True,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[RawPage]:
        """A backfill by key from ``after`` (when it is a backfill position, or None) under
        ``snapshot``, handing over to the log at it; then the log in snapshot deltas, from the
        hand-over or ``follow_from`` (where the lane's followers stand, :func:`capture_start`), up
        to ``head``, or by default up to whatever has committed when the log's first page is read.

        A shard of a sharded backfill walks keys up to ``until`` (inclusive; None for the last
        range) with ``hand_over=False``: it stops at the end of its range, and the plan hands
        over once every shard is done."""
        self.reader.drained = False
        position = after
        if position is None or position.backfilling:
            yield from self._walk(None if position is None else position.key, snapshot, until, built)
            if not hand_over or not log:
                self.reader.drained = True
                if hand_over:
                    yield RawPage("hand_over", (), LogCursor.done(snapshot), snapshot)
                return
            handed = LogCursor.done(snapshot)
            yield RawPage("hand_over", (), handed, snapshot)
            position = handed if follow_from is None else lane_start([handed, follow_from])
        since = position.since
        if position.batch is not None:  # a batch a killed run left half delivered: finish it
            yield from self._batch(since, position.batch, position.key, last=False, built=built)
            since = position.batch
        if head is None or head.rank > since.rank:
            yield from self._batch(since, head, None, last=True, built=built)
        else:
            self.reader.drained = True

    def _walk(
        self, last_key: Key | None, snapshot: Snapshot, until: Any, built: BuiltColumns = NO_BUILT_COLUMNS
    ) -> Iterator[RawPage]:
        reader, source = self.reader, self.source
        src, fields, key = source.subquery(), source.fields, source.key
        # Two statements for the whole walk, the page's start a parameter: building (and
        # cache-keying) the statement anew cost more Python per page than decoding its rows.
        after = bindparam("after", type_=src.c[key].type)
        first = backfill_statement(src, fields, key, None, reader.page_size, until, built)
        following = backfill_statement(src, fields, key, after, reader.page_size, until, built)
        while True:
            if last_key is None:
                rows = reader.run("backfill page", first)
            else:
                rows = reader.run("backfill page", following, {"after": last_key})
            if rows:
                reader.rows += len(rows)
                last_key = rows[-1]._mapping[key]
                read = Snapshot.parse(rows[0][0])
                yield RawPage("backfill", rows, LogCursor.backfill(last_key, snapshot), read)
            if len(rows) < reader.page_size:
                return

    def _batch(
        self,
        since: Snapshot,
        batch: Snapshot | None,
        after: Key | None,
        *,
        last: bool,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[RawPage]:
        """The batch ``since`` → ``batch`` in pages of at most ``page_size`` distinct root keys;
        ``batch`` None: up to the snapshot of the batch's first statement, whatever has committed
        by then, however long other transactions stay open. ``last``: the feed ends with it.

        The first page is one statement: its root keys and their rows (all a small batch needs).
        A batch with more keys resolves the rest :data:`PAGES_OF_KEYS` pages' worth at a
        time (:func:`log_keys_statement`) and reads each page's rows by key."""
        reader, source = self.reader, self.source
        src, fields, key = source.subquery(), source.fields, source.key
        size = reader.page_size
        stmt = log_page_statement(src, fields, key, self.tracking, since, batch, after, size, built)
        rows = reader.run("log page", stmt)
        read = Snapshot.parse(rows[0][0])
        if rows[0][-1]:
            reader.truncated.update(rows[0][-1])
        batch = batch or read
        keys = sum(r[1] is not None for r in rows)
        reader.rows += keys
        if keys < size:
            yield self._log_page(rows, since, batch, None, read, last)
            return
        after = rows[-1][1]
        yield self._log_page(rows, since, batch, after, read, False)
        by_keys = log_rows_statement(src, fields, key, self.tracking, built)
        while True:
            found = reader.run(
                "log keys", log_keys_statement(self.tracking, since, batch, after, size * PAGES_OF_KEYS)
            )[0]
            if found.etl_truncated:
                reader.truncated.update(found.etl_truncated)
            roots: list[Any] = found.etl_keys or []
            if not roots:  # the batch ended on a full page
                yield self._log_page((), since, batch, None, Snapshot.parse(found.etl_snapshot), last)
                return
            for start in range(0, len(roots), size):
                chunk = roots[start : start + size]
                rows = reader.run("log page", by_keys, {"keys": chunk})
                reader.rows += len(rows)
                end = len(roots) < size * PAGES_OF_KEYS and start + size >= len(roots)
                after = chunk[-1]
                read = Snapshot.parse(rows[0][0])
                yield self._log_page(rows, since, batch, None if end else after, read, last)
                if end:
                    return

    def _log_page(
        self,
        rows: Sequence[Any],
        since: Snapshot,
        batch: Snapshot,
        after: Key | None,
        read: Snapshot,
        last: bool,
    ) -> RawPage:
        """One page of the batch; ``after`` None: its last page (the lane is at the batch's end)."""
        if after is None and last:
            self.reader.drained = True  # known before the last page is handed on
        at = LogCursor.done(batch) if after is None else LogCursor.in_batch(since, batch, after)
        return RawPage("log", rows, at, read, batch)

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag:
        log_cursors = {k: c if isinstance(c, LogCursor) else None for k, c in cursors.items()}
        stmt = log_lag_statement(self.source.subquery(), self.source.key, self.tracking, log_cursors)
        row = self.reader.run("lag", stmt)[0]
        now, values = row[0], row[1 : 1 + 2 * len(log_cursors)]
        open_transactions, log_bytes, estimate, first_entry = row[1 + 2 * len(log_cursors) :]
        rows, seconds = {}, {}
        for i, (name, cursor) in enumerate(log_cursors.items()):
            count, oldest = values[2 * i], values[2 * i + 1]
            rows[name] = int(count)
            if cursor is None or cursor.backfilling:
                seconds[name] = float("inf") if count else 0.0
            else:
                seconds[name] = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        age = None if first_entry is None else round((now - first_entry).total_seconds(), 1)
        upkeep = {
            "bytes": int(log_bytes or 0),
            "entries_estimate": int(estimate or 0),
            "oldest_entry_age_s": age,
        }
        return Lag(rows, seconds, tuple(open_transactions), upkeep)

    def newest(self) -> str | None:
        """The newest log entry's time (its writing transaction's start)."""
        log = self.tracking.log_table
        rows = self.reader.run("head", select(func.max(log.c.at)))
        return None if rows[0][0] is None else str(rows[0][0].isoformat())

    def pending(self, after: Position | None) -> bool:
        """Whether committed entries wait that ``after``'s last batch did not see (one probe)."""
        if not isinstance(after, LogCursor):
            return False
        since = after.batch if after.batch is not None else after.since
        return bool(self.reader.run("pending", pending_statement(self.tracking, since))[0][0])

    def trim(self, cursors: Sequence[Position | None]) -> int:
        """Delete the entries every one of ``cursors`` (every non-retired version's) has been
        delivered: those the earliest of their snapshots saw. Nothing while any version has no
        position yet."""
        if not cursors or not all(isinstance(c, LogCursor) for c in cursors):
            return 0
        below = earliest([c.since for c in cursors if isinstance(c, LogCursor)])
        stmt = trim_statement(self.tracking, below)
        reader = self.reader

        def once() -> int:
            with reader.engine.begin() as conn:
                reader.statements += 1
                return int(conn.execute(stmt).rowcount)

        try:
            deleted = call_with_retry(
                once, retry_on=transient_db_error, backoff=reader.backoff, log_as="source_retry", what="trim"
            )
        except DBAPIError as exc:
            refused = refused_connection(exc, "SOURCE_DATABASE_URL")
            if refused is not None:
                raise refused from None
            if transient_db_error(exc):
                raise SourceUnavailable(
                    f"PostgreSQL did not answer while trimming the change log of {self.source.name!r} "
                    f"after {reader.backoff.attempts} attempts; nothing was lost (the log is only longer)"
                ) from None
            raise SourceRefused(
                f"the change log of source {self.source.name!r} could not be trimmed: "
                f"{server_message(exc)}. The sync role needs DELETE on it "
                f"(GRANT DELETE ON {self.tracking.log_table.fullname})"
            ) from None
        event("log_trimmed", source=self.source.name, seen_by=str(below), deleted=deleted)
        return deleted

    def by_keys(self, keys: list[Any]) -> Page[R]:
        src = self.source.subquery()
        stmt = select(
            select(SNAPSHOT).scalar_subquery().label("etl_snapshot"), *(src.c[f] for f in self.source.fields)
        )
        rows = self.reader.run("rows by key", stmt.where(src.c[self.source.key].in_(keys))) if keys else []
        read = Snapshot.parse(rows[0][0]) if rows else Snapshot.below(0)
        raw = RawPage("backfill", rows, LogCursor.backfill(0, read), read)
        return next(normalise_capture(self.source, iter([raw])))

    def walk(self) -> Iterator[Page[R]]:
        bound = self.head().below
        assert isinstance(bound, Snapshot)
        yield from normalise_capture(self.source, self.pages(None, bound, log=False, hand_over=False))


def lane_start(positions: Sequence[LogCursor]) -> LogCursor:
    """Where a lane's log reading starts, given where each of its versions stands: their common
    position, or else a fresh batch from the earliest snapshot any of them was delivered. (A
    batch half delivered to one version cannot be resumed for another that stands elsewhere: its
    keys below the resume point would be skipped for that one.)"""
    first = positions[0]
    if all(p == first for p in positions):
        return first
    return LogCursor.done(earliest([p.since for p in positions]))


def capture_start(
    starts: Mapping[str, Position | None], run: Snapshot
) -> tuple[LogCursor | None, Snapshot, LogCursor | None]:
    """Where a lane starts: ``(after, snapshot, follow_from)``.

    Versions still backfilling (or new) walk the source by key from the lowest of their keys,
    under the earliest of their snapshots (a new one's is this run's), and hand over to the log
    there, so whatever changed since any of them began is delivered from the log, never skipped.
    Versions already following the log go on from where they stand (:func:`lane_start`)."""
    positions = [c if isinstance(c, LogCursor) else None for c in starts.values()]
    followers = [c for c in positions if c is not None and not c.backfilling]
    behind = [c for c in positions if c is None or c.backfilling]
    follow_from = lane_start(followers) if followers else None
    if not behind:
        return follow_from, run, None
    known = [c for c in behind if c is not None]
    snapshot = earliest([c.snapshot for c in known] + ([run] if len(known) < len(behind) else []))
    after = min(known) if len(known) == len(behind) else None
    return after, snapshot, follow_from


def normalise_capture(source: Source[R], pages: Iterator[RawPage]) -> Iterator[Page[R]]:
    """Capture rows → changes. Backfill rows are source rows; a log row is one root key of the
    batch and its source row, all NULL when the row is gone: a delete in every version. A log
    change stands at its key in its batch, so a version that had the batch half delivered skips
    exactly what it has. Every document carries the external version of the snapshot it was read
    under."""
    make = positional(source.record_type)
    is_deleted = source.deleted_getter()
    key_of = attrgetter(source.key)
    width = len(source.fields)
    key_at = source.fields.index(source.key)
    for number, raw in enumerate(pages, start=1):
        changes: list[Change[R]] = []
        version = raw.read.external_version()
        if raw.kind == "backfill":
            snapshot = raw.last.snapshot
            built = bool(raw.rows) and len(raw.rows[0]) > 1 + width  # SQL-built columns follow
            for row in raw.rows:
                record = make(*row[1 : 1 + width])
                key = key_of(record)
                extra = tuple(row[1 + width :]) if built else ()
                changes.append(
                    Change(key, LogCursor.backfill(key, snapshot), version, is_deleted(record), record, extra)
                )
        elif raw.kind == "log":
            since, batch = raw.last.since, raw.batch
            assert batch is not None
            for row in raw.rows:
                root = row[1]
                if root is None:
                    continue  # a batch with no key left
                at = LogCursor.in_batch(since, batch, root)
                values = tuple(row[2 : 2 + width])
                if values[key_at] is None:
                    changes.append(Change(root, at, version, True, None))
                else:
                    record = make(*values)
                    extra = tuple(row[2 + width : -1])  # SQL-built columns, before the truncations
                    changes.append(Change(root, at, version, is_deleted(record), record, extra))
        yield Page(number, changes, raw.last, first_visit=raw.kind != "log", batch=raw.batch)
