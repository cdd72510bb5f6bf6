"""The change feed of a source with a trusted change column: keyset pages in ``(changed, key)``
order below a high watermark taken from ``pg_stat_activity``.

No hard deletes and no parent changes are seen this way (reconciliation finds them); sources that
can, declare ``tracking`` and read the change log instead (:mod:`etl_core.read.log_feed`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from etl_core.errors import ConfigError
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.construct import positional
from etl_core.model.cursor import Cursor, Position, external_version, lowest
from etl_core.model.records import Change, Lag, Page, Shard, Watermark
from etl_core.model.source import WATERMARK_SQL, Source

if TYPE_CHECKING:
    from etl_core.read.extract import Extractor

R = TypeVar("R")

_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_NOWHERE = Cursor(_FAR_FUTURE, 0)


class ColumnFeed(Generic[R]):
    def __init__(self, reader: Extractor[R]) -> None:
        self.reader = reader
        self.source: Source[R] = reader.source

    def head(self) -> Watermark:
        row = self.reader.run("watermark", WATERMARK_SQL, {"lag": self.reader.safety_lag_s})[0]
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

    def changes(
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[R]]:
        if shard is not None:
            raise ConfigError(
                f"source {self.source.name!r}: a sharded backfill needs change capture "
                "(tracking=Tracking(...)) to hand over to the log at its snapshot"
            )
        start = lowest(list(starts.values()))
        assert isinstance(head.below, datetime)
        after = start if isinstance(start, Cursor) else None
        return normalise(self.source, self.pages(after, head.below, built))

    def pages(
        self, after: Cursor | None, below: datetime, built: BuiltColumns = NO_BUILT_COLUMNS
    ) -> Iterator[Sequence[Any]]:
        """Raw row pages in change order, strictly after ``after`` and strictly below ``below``
        (the source's fields, then ``built``'s columns)."""
        reader = self.reader
        reader.drained = False
        changed = self.source.changed_column
        # two statements for the whole walk, the page's start a parameter (as the log feed's walk)
        first = self.source.page_statement(below, reader.page_size, built)
        following = self.source.page_statement(below, reader.page_size, built, resumed=True)
        while True:
            if after is None:
                rows = reader.run("page", first)
            else:
                rows = reader.run(
                    "page", following, {"after_changed": after.changed_at, "after_key": after.key}
                )
            reader.rows += len(rows)
            if len(rows) < reader.page_size:
                reader.drained = True  # known before the last page is handed on
            if rows:
                yield rows
            if reader.drained:
                return
            last = rows[-1]
            after = Cursor(last._mapping[changed], last._mapping[self.source.key])

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag:
        by_time = {k: c if isinstance(c, Cursor) else None for k, c in cursors.items()}
        row = self.reader.run("lag", self.source.lag_statement(by_time))[0]
        head = None if row[0] is None else Cursor(row[0], row[1])
        rows_behind = {name: int(n) for name, n in zip(cursors, row[2:], strict=True)}
        return Lag(rows_behind, {name: _seconds(head, c) for name, c in by_time.items()})

    def newest(self) -> str | None:
        found = self.reader.run("head", self.source.head_statement())
        return Cursor(found[0][0], found[0][1]).describe() if found else None

    def pending(self, after: Position | None) -> bool:
        """A change column has no queue to look into: the follower's poll is its only signal."""
        return False

    def trim(self, cursors: Sequence[Position | None]) -> int:
        return 0  # nothing is kept on the source's side

    def by_keys(self, keys: list[Any]) -> Page[R]:
        found = self.reader.rows_by_keys(keys)
        return next(normalise(self.source, iter([found]))) if found else Page(1, [], _NOWHERE)

    def walk(self) -> Iterator[Page[R]]:
        yield from normalise(self.source, self.pages(None, _FAR_FUTURE))


def _seconds(head: Cursor | None, cursor: Cursor | None) -> float:
    if head is None:
        return 0.0
    if cursor is None:
        return float("inf")
    return max(0.0, (head.changed_at - cursor.changed_at).total_seconds())


def normalise(source: Source[R], pages: Iterator[Sequence[Any]]) -> Iterator[Page[R]]:
    """Rows → frozen DTOs, each with its key, change position, external version, delete flag."""
    make = positional(source.record_type)
    position = source.position_getter()
    is_deleted = source.deleted_getter()
    key_of = attrgetter(source.key)
    width = len(source.fields)
    for number, rows in enumerate(pages, start=1):
        changes = []
        built = len(rows[0]) > width  # the lane's SQL-built columns follow the fields
        for row in rows:
            record = make(*row[:width]) if built else make(*row)
            at = position(record)
            extra = tuple(row[width:]) if built else ()
            changes.append(
                Change(key_of(record), at, external_version(at.changed_at), is_deleted(record), record, extra)
            )
        yield Page(number, changes, changes[-1].position)
