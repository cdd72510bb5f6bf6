"""Progress per version per page, and checkpoints: where cursors move, and only there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from etl_core.logs import event
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
    """Persist each acknowledged page's cursors, in page order, so a killed run resumes there.

    The saves run in a thread of their own (:class:`Checkpoints`), so the next page's write is
    not held up by a round trip to the state database: on a busy node a save took 50 ms, a fifth
    of an incremental sync spent waiting (benchmarks/README.md). A save that finds several pages
    acknowledged since the last saves only the newest position (the same as saving each, as
    positions only move forward). The stage returns, normally or by an error, only once every
    acknowledged page is saved; a save that fails (after its retries) fails the run at the next
    page. A process killed outright may redo the pages acknowledged during the last save, which
    external versions make harmless.
    """

    def stage(pages: Iterator[PageProgress]) -> Iterator[PageProgress]:
        saver = Checkpoints(store)
        try:
            for progress in pages:
                saver.put({k: v.cursor for k, v in progress.versions.items() if v.cursor is not None})
                if on_page is not None:
                    on_page(progress)
                yield progress
        except BaseException:
            saver.close(failing=True)  # what was acknowledged before the failure is kept
            raise
        saver.close()

    return stage


class Checkpoints:
    """One thread that saves the newest acknowledged cursors, in order, while pages go on."""

    def __init__(self, store: CursorStore) -> None:
        self._store = store
        self._ready = threading.Condition()
        self._pending: dict[str, Position] = {}
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="etl-checkpoints", daemon=True)
        self._thread.start()

    def put(self, cursors: Mapping[str, Position]) -> None:
        """Queue a page's cursors; raises the error of a save that failed before."""
        with self._ready:
            if self._error is not None:
                raise self._error
            self._pending.update(cursors)  # a later page's position is never behind an earlier's
            self._ready.notify()

    def close(self, *, failing: bool = False) -> None:
        """Save what is queued and stop. ``failing``: the run is failing already; a save that
        fails now is logged, not raised over the run's own error."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        if self._error is not None:
            if not failing:
                raise self._error
            event("checkpoint_failed", error=str(self._error))

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closing:
                    self._ready.wait()
                if not self._pending:
                    return
                cursors, self._pending = self._pending, {}
            try:
                self._store.save(cursors)
            except BaseException as exc:  # handed to the pipeline's thread, raised there
                with self._ready:
                    self._error = exc
                return
