"""The small interfaces state and side effects hide behind, so each stage can be tested alone."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Position
from etl_core.model.records import Action, DeadLetter, Lag, Outcome, Page, Shard, Watermark
from etl_core.model.versions import IndexVersion

if TYPE_CHECKING:
    from etl_core.model.source import Source

R = TypeVar("R")


class ChangeFeed(Protocol[R]):
    """How one source's changes are read, chosen once from the source: the generated change log
    (:class:`etl_core.read.log_feed.LogFeed`) or a trusted change column
    (:class:`etl_core.read.column_feed.ColumnFeed`). Everything that reads changes goes through it."""

    def head(self) -> Watermark:
        """Where a run reads up to (one statement)."""
        ...

    def changes(
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[R]]:
        """A lane's pages, normalised, from where its versions stand up to ``head``; each row with
        the lane's SQL-built columns (``built``) when it has any."""
        ...

    def lag(self, cursors: Mapping[str, Position | None]) -> Lag: ...

    def newest(self) -> str | None: ...

    def pending(self, after: Position | None) -> bool: ...

    def trim(self, cursors: Sequence[Position | None]) -> int: ...

    def by_keys(self, keys: list[Any]) -> Page[R]: ...

    def walk(self) -> Iterator[Page[R]]: ...


class PageSource(Protocol[R]):
    """What a sync reads its pages through (:class:`etl_core.read.extract.Extractor`), counting the
    statements and rows it spent."""

    @property
    def source(self) -> Source[R]: ...

    @property
    def page_size(self) -> int: ...

    @property
    def statements(self) -> int: ...

    @property
    def rows(self) -> int: ...

    @property
    def drained(self) -> bool:
        """The last walk ended because nothing was left below its bound (not cut short)."""
        ...

    @property
    def truncated(self) -> set[str]:
        """Tracked tables whose TRUNCATE was delivered (so far, by this reader)."""
        ...

    def watermark(self) -> Watermark: ...

    def changes(
        self,
        starts: Mapping[str, Position | None],
        head: Watermark,
        shard: Shard | None = None,
        built: BuiltColumns = NO_BUILT_COLUMNS,
    ) -> Iterator[Page[R]]: ...


class CursorStore(Protocol):
    """Where each version's cursor lives between runs. ``save`` must merge, never go back."""

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]: ...

    def save(self, cursors: Mapping[str, Position]) -> None: ...


class DeadLetterStore(Protocol):
    """Durable letters; one open letter per (version, key), resolved when the key writes."""

    def put(self, letters: Sequence[DeadLetter]) -> None: ...

    def open_keys(self, versions: Iterable[str]) -> dict[str, set[str]]: ...

    def resolve(self, version: str, keys: Sequence[str]) -> None: ...

    def count_open(self, version: str) -> int: ...


class Sink(Protocol):
    """The search side. ``write`` returns one classified outcome per action, or raises
    :class:`~etl_core.errors.SinkUnavailable` once its retry budget is spent."""

    def ensure_indices(self, versions: Sequence[IndexVersion[Any]]) -> set[str]:
        """Create the missing indices, all or none; the keys of the versions created."""
        ...

    def existing(self, index: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the index holds a document for."""
        ...

    def write(self, actions: Sequence[Action]) -> list[Outcome]: ...

    def finish_backfill(
        self, versions: Sequence[IndexVersion[Any]], changed: Collection[str] | None = None
    ) -> None:
        """Serving settings back on; what ``changed`` (keys; None: all) wrote made searchable."""
        ...


class SearchIndex(Sink, Protocol):
    """A sink that can also be read back: for reconciliation, validation and replay."""

    def fetch(self, index: str, ids: Sequence[str]) -> dict[str, tuple[int, Any]]: ...

    def scan_ids(self, index: str, batch: int = 1000) -> Iterator[list[tuple[str, int]]]: ...


class Aliases(Protocol):
    """What a migration step needs of the search side: the read alias and index lifecycles."""

    def alias_targets(self, alias: str) -> list[str]: ...

    def point_alias(self, alias: str, index: str) -> list[str]: ...

    def finish_backfill(
        self, versions: Sequence[IndexVersion[Any]], changed: Collection[str] | None = None
    ) -> None: ...

    def delete_index(self, index: str) -> bool: ...


class ShardPlanStore(Protocol):
    """Where a lane's unfinished sharded backfill plan is kept until its hand-over."""

    def claim(self, lane: str, plan: Mapping[str, Any]) -> dict[str, Any]: ...

    def get(self, lane: str) -> dict[str, Any] | None: ...

    def drop(self, lane: str) -> None: ...
