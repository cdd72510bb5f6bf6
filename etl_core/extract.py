"""Extraction: keyset pages from the source, then rows → records (DTOs).

One SQL statement per page, for the whole lane. Pages are bounded (``LIMIT``), so memory does not
grow with the table, and each page runs in its own short autocommit transaction so that this
reader never holds back another sync's high watermark.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Engine, func, literal, select, tuple_
from sqlalchemy.exc import DBAPIError

from etl_core.capture import (
    XMIN,
    backfill_statement,
    bound_statement,
    log_lag_statement,
    log_page_statement,
    trim_statement,
)
from etl_core.cursor import Cursor, LogCursor, Position, external_version
from etl_core.errors import ConfigError, SourceRefused, SourceUnavailable
from etl_core.logs import event
from etl_core.model import Change, Page
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry, transient_db_error
from etl_core.source import WATERMARK_SQL, Source

R = TypeVar("R")


def _first_line(exc: DBAPIError) -> str:
    """The server's message without the statement or its parameters."""
    return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ''}"


@dataclass(frozen=True, slots=True)
class Watermark:
    """``below``: the exclusive upper bound of safe change positions; ``now``: the server clock.
    With change capture ``below`` is the snapshot xmin (a transaction id), not a time."""

    below: datetime | int
    now: datetime


@dataclass(frozen=True, slots=True)
class Lag:
    """How far each version is behind the source: changes still to read, and their age in seconds
    (``inf`` for a version that has never finished a backfill)."""

    rows_behind: Mapping[str, int]
    seconds: Mapping[str, float]

    def seconds_behind(self, version: str) -> float:
        return self.seconds.get(version, 0.0)


@dataclass(frozen=True, slots=True)
class RawPage:
    """What one capture statement returned, before normalisation."""

    kind: Literal["backfill", "hand_over", "log"]
    rows: Sequence[Any]
    last: LogCursor
    bound: int


@dataclass(slots=True)
class Extractor(Generic[R]):
    """Reads pages of one source. Counts what it did, for metrics and benchmarks."""

    engine: Engine
    source: Source[R]
    page_size: int = 1000
    safety_lag_s: float = 0.0
    backoff: Backoff = DEFAULT_BACKOFF
    statements: int = 0
    rows: int = 0
    drained: bool = False
    """The last page walk ended because nothing was left below its bound (not cut short)."""

    def _run(self, what: str, stmt: Any, params: dict[str, Any] | None = None) -> Sequence[Any]:
        def once() -> Sequence[Any]:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                self.statements += 1
                return conn.execute(stmt, params or {}).all()

        try:
            return call_with_retry(
                once, retry_on=transient_db_error, backoff=self.backoff, log_as="source_retry", what=what
            )
        except DBAPIError as exc:
            if not transient_db_error(exc):
                raise SourceRefused(
                    f"PostgreSQL refused the {what} statement of source {self.source.name!r}: "
                    f"{_first_line(exc)}. Check the source's selectable and the role's privileges; "
                    "no cursor was moved."
                ) from None
            raise SourceUnavailable(
                f"PostgreSQL source {self.source.name!r} could not be read ({what}) after "
                f"{self.backoff.attempts} attempts: {type(exc.orig or exc).__name__}. Check that "
                "the server is up and SOURCE_DATABASE_URL points at it; no cursor was moved."
            ) from None

    def watermark(self) -> Watermark:
        """The safe bound of this run: below it nothing can still change."""
        if self.source.captured:
            row = self._run("bound", bound_statement())[0]
        else:
            row = self._run("watermark", WATERMARK_SQL, {"lag": self.safety_lag_s})[0]
            if not row[2]:
                raise ConfigError(
                    f"source {self.source.name!r} orders changes by the column "
                    f"{self.source.changed!r}, whose safe bound reads every session's transaction "
                    "start in pg_stat_activity; this role sees only its own, so a transaction of "
                    "another role could commit behind the cursor and be lost. GRANT "
                    "pg_read_all_stats TO the sync role, or declare tracking=Tracking(...) "
                    "(change capture needs no such privilege)"
                )
        return Watermark(below=row[0], now=row[1])

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag:
        """Per version, how many changes it still has to read and how old the oldest is: one
        statement for the whole lane."""
        if self.source.tracking is not None:
            tracking = self.source.tracking
            log_cursors = {k: c if isinstance(c, LogCursor) else None for k, c in cursors.items()}
            row = self._run(
                "lag", log_lag_statement(self.source.subquery(), self.source.key, tracking, log_cursors)
            )[0]
            now, values = row[0], row[1:]
            rows, seconds = {}, {}
            for i, (name, cursor) in enumerate(log_cursors.items()):
                count, oldest = values[2 * i], values[2 * i + 1]
                rows[name] = int(count)
                if cursor is None or cursor.backfilling:
                    seconds[name] = float("inf") if count else 0.0
                else:
                    seconds[name] = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
            return Lag(rows, seconds)
        row = self._run("lag", self.source.lag_statement(cursors))[0]  # type: ignore[arg-type]
        head = None if row[0] is None else Cursor(row[0], row[1])
        rows_behind = {name: int(n) for name, n in zip(cursors, row[2:], strict=True)}
        return Lag(rows_behind, {name: _seconds(head, c) for name, c in cursors.items()})

    def head(self) -> str | None:
        """The newest change, for display: a change position, or the newest log entry's time."""
        if self.source.tracking is not None:
            log = self.source.tracking.log_table
            rows = self._run("head", select(func.max(log.c.at)))
            return None if rows[0][0] is None else str(rows[0][0].isoformat())
        found = self._run("head", self.source.head_statement())
        return Cursor(found[0][0], found[0][1]).describe() if found else None

    def pending(self, after: Position | None) -> bool:
        """Whether the change log holds entries past ``after``, readable or not yet (one query)."""
        if self.source.tracking is None or not isinstance(after, LogCursor):
            return False
        log, at = self.source.tracking.log_table, after.hand_over()
        stmt = select(
            select(log.c.seq)
            .where(tuple_(log.c.xid, log.c.seq) > tuple_(literal(at.major), literal(at.minor)))
            .exists()
        )
        return bool(self._run("pending", stmt)[0][0])

    def trim(self, cursors: Sequence[Position | None]) -> int:
        """Delete the log entries every one of ``cursors`` (every non-retired version's) has read;
        how many. Nothing while any version has no position yet."""
        if self.source.tracking is None or not cursors:
            return 0
        if not all(isinstance(c, LogCursor) for c in cursors):
            return 0
        below = min(c.hand_over() for c in cursors if isinstance(c, LogCursor))
        stmt = trim_statement(self.source.tracking, below)

        def once() -> int:
            with self.engine.begin() as conn:
                self.statements += 1
                return int(conn.execute(stmt).rowcount)

        try:
            deleted = call_with_retry(
                once, retry_on=transient_db_error, backoff=self.backoff, log_as="source_retry", what="trim"
            )
        except DBAPIError as exc:
            if transient_db_error(exc):
                raise SourceUnavailable(
                    f"PostgreSQL did not answer while trimming the change log of {self.source.name!r} "
                    f"after {self.backoff.attempts} attempts; nothing was lost (the log is only longer)"
                ) from None
            raise SourceRefused(
                f"the change log of source {self.source.name!r} could not be trimmed: {_first_line(exc)}. "
                "The sync role needs DELETE on it (GRANT DELETE ON <state schema>.<source>_changes)"
            ) from None
        event("log_trimmed", source=self.source.name, below=below.describe(), deleted=deleted)
        return deleted

    def existing(self, keys: list[Any]) -> list[Any]:
        """Which of ``keys`` still have a source row (one query)."""
        if not keys:
            return []
        return [r[0] for r in self._run("existing keys", self.source.existing_keys_statement(keys))]

    def rows_by_keys(self, keys: list[Any]) -> Sequence[Any]:
        """Current source rows of ``keys`` (one query), in the record's field order."""
        if not keys:
            return []
        return self._run("rows by key", self.source.by_keys_statement(keys))

    def by_keys(self, keys: list[Any]) -> Page[R]:
        """The current rows of ``keys`` as one page (one query): fresh data for replays.
        Keys with no row left are simply absent."""
        if self.source.tracking is None:
            found = self.rows_by_keys(keys)
            return next(normalise(self.source, iter([found]))) if found else Page(1, [], _NOWHERE)
        src = self.source.subquery()
        stmt = select(
            select(XMIN).scalar_subquery().label("etl_xmin"), *(src.c[f] for f in self.source.fields)
        )
        rows = self._run("rows by key", stmt.where(src.c[self.source.key].in_(keys))) if keys else []
        xmin = int(rows[0][0]) if rows else 0
        raw = RawPage("backfill", rows, LogCursor.backfill(0, xmin), xmin)
        return next(normalise_capture(self.source, iter([raw])))

    def walk(self) -> Iterator[Page[R]]:
        """Every current row, in pages: what reconciliation compares the indices with."""
        if self.source.tracking is None:
            yield from normalise(self.source, self.pages(None, _FAR_FUTURE))
            return
        bound = self.watermark().below
        assert isinstance(bound, int)
        for page in normalise_capture(self.source, self.capture_pages(None, bound, log=False)):
            if page.changes:  # the backfill's pages, not the hand-over
                yield page

    def count(self) -> int:
        return int(self._run("count", self.source.count_statement())[0][0])

    def scalar(self, what: str, stmt: Any) -> Any:
        """One value of one statement, with the extractor's retries (e.g. shard boundaries)."""
        return self._run(what, stmt)[0][0]

    def pages(self, after: Cursor | None, below: datetime) -> Iterator[Sequence[Any]]:
        """Raw row pages in change order, strictly after ``after`` and strictly below ``below``."""
        self.drained = False
        changed = self.source.changed_column
        while True:
            rows = self._run("page", self.source.page_statement(after, below, self.page_size))
            if not rows:
                break
            self.rows += len(rows)
            yield rows
            if len(rows) < self.page_size:
                break
            last = rows[-1]
            after = Cursor(last._mapping[changed], last._mapping[self.source.key])
        self.drained = True

    def capture_pages(
        self,
        after: LogCursor | None,
        bound: int,
        follow_from: LogCursor | None = None,
        *,
        log: bool = True,
        until: Any = None,
        hand_over: bool = True,
    ) -> Iterator[RawPage]:
        """Pages of a source with change capture: a backfill by key from ``after`` (when it is a
        backfill position, or None) that hands over to the log at ``bound``; then the log, from
        the hand-over or ``follow_from`` (a lane's slowest follower), whichever is earlier.

        A shard of a sharded backfill walks keys up to ``until`` (inclusive; None for the last
        range) with ``hand_over=False``: it stops at the end of its range, and the plan hands
        over once every shard is done."""
        self.drained = False
        tracking = self.source.tracking
        assert tracking is not None
        src, fields, key = self.source.subquery(), self.source.fields, self.source.key
        position = after
        if position is None or position.backfilling:
            last_key = None if position is None else position.major
            while True:
                stmt = backfill_statement(src, fields, key, last_key, self.page_size, until)
                rows = self._run("backfill page", stmt)
                if rows:
                    self.rows += len(rows)
                    last_key = rows[-1]._mapping[key]
                    yield RawPage("backfill", rows, LogCursor.backfill(last_key, bound), bound)
                if len(rows) < self.page_size:
                    break
            if not hand_over:
                self.drained = True
                return
            handed = LogCursor.log(bound, 0)
            yield RawPage("hand_over", (), handed, bound)
            if not log:
                self.drained = True
                return
            position = handed if follow_from is None else min(handed, follow_from)
        while True:
            stmt = log_page_statement(src, fields, key, tracking, position, self.page_size)
            rows = self._run("log page", stmt)
            first = rows[0]._mapping
            entries = int(first["etl_entries"] or 0)
            if not entries:
                break
            position = LogCursor.log(int(first["etl_last_xid"]), int(first["etl_last_seq"]))
            self.rows += sum(r._mapping["etl_root"] is not None for r in rows)
            yield RawPage("log", rows, position, int(first["etl_xmin"]))
            if entries < self.page_size:
                break
        self.drained = True


_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_NOWHERE = Cursor(_FAR_FUTURE, 0)


def _seconds(head: Cursor | None, cursor: Position | None) -> float:
    if head is None:
        return 0.0
    if not isinstance(cursor, Cursor):
        return float("inf")
    return max(0.0, (head.changed_at - cursor.changed_at).total_seconds())


def normalise(source: Source[R], pages: Iterator[Sequence[Any]]) -> Iterator[Page[R]]:
    """Rows → frozen DTOs, each with its key, change position, external version, delete flag."""
    make = source.record_type
    position = source.position_getter()
    is_deleted = source.deleted_getter()
    key_of = attrgetter(source.key)
    for number, rows in enumerate(pages, start=1):
        changes = []
        for row in rows:
            record = make(*row)
            at = position(record)
            changes.append(
                Change(key_of(record), at, external_version(at.changed_at), is_deleted(record), record)
            )
        yield Page(number, changes, changes[-1].position)


def normalise_capture(source: Source[R], pages: Iterator[RawPage]) -> Iterator[Page[R]]:
    """Capture rows → changes. Backfill rows are source rows (after the statement's xmin); a log
    row is one affected root key and its source row, all NULL when the row is gone: a delete in
    every version. Every change of a log page stands at the page's end: a version resumes after
    whole pages, and a document read twice carries the same content and a version as high."""
    make = source.record_type
    is_deleted = source.deleted_getter()
    key_of = attrgetter(source.key)
    width = len(source.fields)
    key_at = source.fields.index(source.key)
    for number, raw in enumerate(pages, start=1):
        changes: list[Change[R]] = []
        if raw.kind == "backfill":
            for row in raw.rows:
                record = make(*row[1:])
                key = key_of(record)
                changes.append(
                    Change(key, LogCursor.backfill(key, raw.bound), int(row[0]), is_deleted(record), record)
                )
        elif raw.kind == "log":
            for row in raw.rows:
                root = row[4]
                if root is None:
                    continue  # entries of a parent with no root row left
                values = tuple(row[5 : 5 + width])
                if values[key_at] is None:
                    changes.append(Change(root, raw.last, raw.bound, True, None))
                else:
                    record = make(*values)
                    changes.append(Change(root, raw.last, raw.bound, is_deleted(record), record))
        yield Page(number, changes, raw.last, first_visit=raw.kind != "log")
