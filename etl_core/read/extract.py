"""Extraction: the reader every statement to the source goes through, and the change feed it
reads changes with.

One SQL statement per page, for the whole lane. Pages are bounded (``LIMIT``), so memory does
not grow with the table, and each statement runs in its own short autocommit transaction. How
changes are found is the :class:`~etl_core.model.protocols.ChangeFeed` chosen once from the source: the
change log (:mod:`etl_core.read.log_feed`) or a change column (:mod:`etl_core.read.column_feed`); nothing
else branches on the mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from psycopg.errors import UndefinedTable
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from etl_core.errors import SourceRefused, SourceUnavailable
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Position
from etl_core.model.protocols import ChangeFeed
from etl_core.model.records import Lag, Page, Shard, Watermark
from etl_core.model.source import Source
from etl_core.read.column_feed import ColumnFeed
from etl_core.read.log_feed import LogFeed
from etl_core.retry import (
    DEFAULT_BACKOFF,
    Backoff,
    call_with_retry,
    refused_connection,
    server_message,
    transient_db_error,
)

R = TypeVar("R")


@dataclass(slots=True)
class Extractor(Generic[R]):
    """Reads one source. Counts what it did, for metrics and benchmarks."""

    engine: Engine
    source: Source[R]
    page_size: int = 1000
    safety_lag_s: float = 0.0
    backoff: Backoff = DEFAULT_BACKOFF
    statements: int = 0
    rows: int = 0
    drained: bool = False
    """The last walk ended because nothing was left below its bound (not cut short)."""
    truncated: set[str] = field(default_factory=set)
    """Tracked tables whose TRUNCATE a batch read delivered: what is gone is not known by key."""
    feed: ChangeFeed[R] = field(init=False, repr=False)
    """How this source's changes are read, chosen once from the source."""

    def __post_init__(self) -> None:
        tracking = self.source.tracking
        self.feed = LogFeed(self, tracking) if tracking is not None else ColumnFeed(self)

    def run(self, what: str, stmt: Any, params: dict[str, Any] | None = None) -> Sequence[Any]:
        """One statement in its own autocommit transaction, with retries; the rows it returned."""

        def once() -> Sequence[Any]:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                self.statements += 1
                return conn.execute(stmt, params or {}).all()

        try:
            return call_with_retry(
                once, retry_on=transient_db_error, backoff=self.backoff, log_as="source_retry", what=what
            )
        except DBAPIError as exc:
            refused = refused_connection(exc, "SOURCE_DATABASE_URL")
            if refused is not None:
                raise refused from None
            tracking = self.source.tracking
            if (
                tracking is not None
                and isinstance(exc.orig, UndefinedTable)
                and tracking.log_table.name in str(exc.orig)
            ):
                raise SourceRefused(
                    f"the change log {tracking.log_table.fullname} of source {self.source.name!r} does "
                    "not exist: change capture is not installed. Run `python -m etl_core --source "
                    "<module:ATTR> tracking apply` (or the Dagster job "
                    f"{self.source.name}_change_tracking with action: apply), then sync; no cursor was moved."
                ) from None
            if not transient_db_error(exc):
                raise SourceRefused(
                    f"PostgreSQL refused the {what} statement of source {self.source.name!r}: "
                    f"{server_message(exc)}. Check the source's selectable and the role's privileges; "
                    "no cursor was moved."
                ) from None
            raise SourceUnavailable(
                f"PostgreSQL source {self.source.name!r} could not be read ({what}) after "
                f"{self.backoff.attempts} attempts: {type(exc.orig or exc).__name__}. Check that "
                "the server is up and SOURCE_DATABASE_URL points at it; no cursor was moved."
            ) from None

    def watermark(self) -> Watermark:
        """Where this run reads up to: the run's snapshot, or the change column's safe bound."""
        return self.feed.head()

    def changes(
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[R]]:
        """The lane's pages from where its versions stand (``starts``) up to ``head``, with the
        lane's SQL-built columns (``built``) in the same statements."""
        return self.feed.changes(starts, head, shard, built)

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag:
        """Per version, how many changes it still has to read and how old the oldest is: one
        statement for the whole lane."""
        return self.feed.lag(cursors)

    def head(self) -> str | None:
        """The newest change, for display."""
        return self.feed.newest()

    def pending(self, after: Position | None) -> bool:
        """Whether committed changes wait past ``after`` (one query; always False without a log)."""
        return self.feed.pending(after)

    def trim(self, cursors: Sequence[Position | None]) -> int:
        """Delete what every one of ``cursors`` (every non-retired version's) has been delivered."""
        return self.feed.trim(cursors)

    def existing(self, keys: list[Any]) -> list[Any]:
        """Which of ``keys`` still have a source row (one query)."""
        if not keys:
            return []
        return [r[0] for r in self.run("existing keys", self.source.existing_keys_statement(keys))]

    def rows_by_keys(self, keys: list[Any]) -> Sequence[Any]:
        """Current source rows of ``keys`` (one query), in the record's field order."""
        if not keys:
            return []
        return self.run("rows by key", self.source.by_keys_statement(keys))

    def by_keys(self, keys: list[Any]) -> Page[R]:
        """The current rows of ``keys`` as one page (one query): fresh data for replays.
        Keys with no row left are simply absent."""
        return self.feed.by_keys(keys)

    def walk(self) -> Iterator[Page[R]]:
        """Every current row, in pages: what reconciliation compares the indices with."""
        return self.feed.walk()

    def count(self) -> int:
        return int(self.run("count", self.source.count_statement())[0][0])

    def scalar(self, what: str, stmt: Any) -> Any:
        """One value of one statement, with the extractor's retries (e.g. shard boundaries)."""
        return self.run(what, stmt)[0][0]
