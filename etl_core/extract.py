"""Extraction: keyset pages from the source, then rows → records (DTOs).

One SQL statement per page, for the whole lane. Pages are bounded (``LIMIT``), so memory does not
grow with the table, and each page runs in its own short autocommit transaction so that this
reader never holds back another sync's high watermark.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from etl_core.cursor import Cursor
from etl_core.errors import SourceRefused, SourceUnavailable
from etl_core.model import Change, Page
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry, transient_db_error
from etl_core.source import WATERMARK_SQL, Source

R = TypeVar("R")


def _first_line(exc: DBAPIError) -> str:
    """The server's message without the statement or its parameters."""
    return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ''}"


@dataclass(frozen=True, slots=True)
class Watermark:
    """``below``: the exclusive upper bound of safe change positions; ``now``: the server clock."""

    below: datetime
    now: datetime


@dataclass(frozen=True, slots=True)
class Lag:
    head: Cursor | None
    rows_behind: Mapping[str, int]

    def seconds_behind(self, cursor: Cursor | None) -> float:
        if self.head is None:
            return 0.0
        if cursor is None:
            return float("inf")
        return max(0.0, (self.head.changed_at - cursor.changed_at).total_seconds())


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
        row = self._run("watermark", WATERMARK_SQL, {"lag": self.safety_lag_s})[0]
        return Watermark(below=row[0], now=row[1])

    def lag(self, cursors: Mapping[str, Cursor | None]) -> Lag:
        """Where the source head is and how many rows each version still has to read."""
        row = self._run("lag", self.source.lag_statement(cursors))[0]
        head = None if row[0] is None else Cursor(row[0], row[1])
        return Lag(head, {name: int(n) for name, n in zip(cursors, row[2:], strict=True)})

    def head(self) -> Cursor | None:
        rows = self._run("head", self.source.head_statement())
        return Cursor(rows[0][0], rows[0][1]) if rows else None

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

    def count(self) -> int:
        return int(self._run("count", self.source.count_statement())[0][0])

    def pages(self, after: Cursor | None, below: datetime) -> Iterator[Sequence[Any]]:
        """Raw row pages in change order, strictly after ``after`` and strictly below ``below``."""
        while True:
            rows = self._run("page", self.source.page_statement(after, below, self.page_size))
            if not rows:
                return
            self.rows += len(rows)
            yield rows
            if len(rows) < self.page_size:
                return
            last = rows[-1]
            after = Cursor(last._mapping[self.source.changed], last._mapping[self.source.key])


def normalise(source: Source[R], pages: Iterator[Sequence[Any]]) -> Iterator[Page[R]]:
    """Rows → frozen DTOs, each with its change position and delete flag."""
    make = source.record_type
    position = source.position_getter()
    is_deleted = source.deleted_getter()
    for number, rows in enumerate(pages, start=1):
        changes = []
        for row in rows:
            record = make(*row)
            changes.append(Change(position(record), is_deleted(record), record))
        yield Page(number, changes)
