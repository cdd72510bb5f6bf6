"""Progress per version per page, and checkpoints: where cursors move, and only there."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from etl_core.model.cursor import Position, merge
from etl_core.model.protocols import CursorStore
from etl_core.model.records import PageProgress, RoutedPage, VersionProgress

R = TypeVar("R")


def advance(
    starts: Mapping[str, Position | None],
) -> Callable[[Iterator[RoutedPage[R]]], Iterator[PageProgress]]:
    """A page reaching this stage has been acknowledged by OpenSearch for every version and its
    dead letters are durable, so every version may move to the page's last position. A version
    whose cursor is already past the page keeps it: merge takes the maximum."""

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[PageProgress]:
        current = dict(starts)
        for routed in pages:
            last = routed.page.last
            versions = {}
            for key, batch in routed.batches.items():
                current[key] = merge(current.get(key), last)
                versions[key] = VersionProgress(key, current[key], batch.counts())
            yield PageProgress(routed.page.number, len(routed.page.changes), last, versions)

    return stage


def checkpoint(
    store: CursorStore, on_page: Callable[[PageProgress], None] | None = None
) -> Callable[[Iterator[PageProgress]], Iterator[PageProgress]]:
    """Persist the page's cursors before asking for the next page, so a killed run resumes here."""

    def stage(pages: Iterator[PageProgress]) -> Iterator[PageProgress]:
        for progress in pages:
            store.save({k: v.cursor for k, v in progress.versions.items() if v.cursor is not None})
            if on_page is not None:
                on_page(progress)
            yield progress

    return stage
