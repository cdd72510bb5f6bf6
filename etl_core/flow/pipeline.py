"""The sync: one extraction feeding every version of a lane, composed from the stages.

pages → normalise → route (filter + transform per version) → load (_bulk) → dead letters
      → advance cursors → checkpoint
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from itertools import islice
from typing import Any, TypeVar

from etl_core.flow.collector import fewer_collections
from etl_core.flow.prefetch import prefetch
from etl_core.flow.progress import advance, checkpoint
from etl_core.flow.route import route
from etl_core.logs import event
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import LogCursor, Position, lowest, merge
from etl_core.model.protocols import CursorStore, DeadLetterStore, PageSource, Sink
from etl_core.model.records import Counts, Page, PageProgress, Shard
from etl_core.model.snapshot import Snapshot
from etl_core.model.versions import IndexVersion, validate_versions
from etl_core.write.load import load, park_dead_letters, resolve_dead_letters

R = TypeVar("R")
Stage = Callable[[Iterator[Any]], Iterator[Any]]
"""A pipeline stage: a generator function from one stream to the next. Each stage is typed where
it is written (``route``, ``load``, ``advance``…); the composition of stages of different item
types is checked by the tests, not by a type the composition could express."""


def compose(*stages: Stage) -> Stage:
    """Left-to-right composition of stream stages: ``compose(f, g)(xs) == g(f(xs))``.

    When a stage ends, however it ends, the stream it read is closed at once, down to the first
    stage: a failure late in the pipeline (a checkpoint the state database refused) then stops
    the earlier stages' threads and waits for their writes in flight before the error leaves
    :func:`sync` and the caller releases the lane. Without it they would run on until garbage
    collection, which the error's traceback delays."""
    return lambda items: reduce(lambda stream, stage: _closing(stage, stream), stages, items)


def _closing(stage: Stage, items: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from stage(items)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


@dataclass(slots=True)
class VersionTotals(Counts):
    """A version's counts over a whole sync, and where it ended."""

    cursor: Position | None = None


@dataclass(slots=True)
class SyncResult:
    """What one run did, per version and in all; the orchestration layer turns it into metadata."""

    versions: dict[str, VersionTotals]
    watermark: datetime | Snapshot
    pages: int = 0
    rows_read: int = 0
    statements: int = 0
    caught_up: bool = True
    duration_s: float = 0.0
    truncated: tuple[str, ...] = ()
    """Tracked tables a delivered TRUNCATE emptied: the versions need a reconciliation, which
    :meth:`etl_core.operations.steps.Operations.sync` runs at once."""

    def report(self) -> dict[str, Any]:
        """Plain values, for a command's output or a log line."""
        return {
            "versions": {
                key: {"cursor": t.cursor.describe() if t.cursor else None, **t.to_json()}
                for key, t in self.versions.items()
            },
            "pages": self.pages,
            "rows_read": self.rows_read,
            "statements": self.statements,
            "caught_up": self.caught_up,
            "duration_s": round(self.duration_s, 3),
        }


def combine(results: Sequence[SyncResult]) -> SyncResult:
    """Several syncs of one lane (a follower's) as one result: totals summed, latest cursors."""
    last = results[-1]
    out = SyncResult({k: VersionTotals() for k in last.versions}, last.watermark, caught_up=last.caught_up)
    for result in results:
        for key, t in result.versions.items():
            o = out.versions[key]
            o.cursor = merge(o.cursor, t.cursor)
            o.add(t)
        out.pages += result.pages
        out.rows_read += result.rows_read
        out.statements += result.statements
        out.duration_s += result.duration_s
    return out


def sync(
    versions: Sequence[IndexVersion[R]],
    *,
    extractor: PageSource[R],
    sink: Sink,
    dead_letters: DeadLetterStore,
    cursors: CursorStore,
    max_pages: int | None = None,
    on_page: Callable[[PageProgress], None] | None = None,
    prefetch_pages: int = 2,
    in_flight: int = 2,
    exclusive: bool = False,
    shard: Shard | None = None,
) -> SyncResult:
    """Bring every version of the lane up to the source's high watermark with one extraction.

    Reads each version's cursor, starts at the slowest one, and sends each page once to the
    database for all versions. Raises :class:`~etl_core.errors.ServiceUnavailable` (after retries)
    without moving any cursor past an unacknowledged page.

    ``exclusive``: the caller holds these versions' lane lock (:mod:`etl_core.state.lanes`), so no
    other writer can race this one, and deletes of documents the index does not hold are not
    sent. Without it every delete is sent: a versioned delete leaves a tombstone that refuses an
    older write still in flight from another sync.

    ``in_flight``: pages whose writes may be on their way at once (:func:`etl_core.write.load.load`);
    ``prefetch_pages``: pages read and routed ahead of the writes (:mod:`etl_core.flow.prefetch`).

    ``shard``: walk one key range of a sharded backfill (:mod:`etl_core.flow.shards`) below the plan's
    bound; ``cursors`` then keep the shard's own progress, and the walk ends without a hand-over.
    """
    began = time.perf_counter()
    source = extractor.source
    validate_versions(versions, source.fields)
    new_indices = sink.ensure_indices(versions)

    starts = cursors.load(v.key for v in versions)
    start = lowest(list(starts.values()))
    statements_before = extractor.statements
    rows_before = extractor.rows
    truncated_before = set(extractor.truncated)
    watermark = extractor.watermark()
    event(
        "sync_started",
        versions=[v.key for v in versions],
        start=start and start.to_json(),
        watermark=str(watermark.below),
    )
    # documents and predicates built in PostgreSQL, if any (a lane built wholly in SQL reads only
    # the key, the change column and the delete flag into Python)
    built = BuiltColumns.of(versions, (source.key, source.changed, source.deleted))
    pages: Iterator[Page[R]] = extractor.changes(starts, watermark, shard, built)

    pipeline = compose(
        route(versions, starts, source.record_to_json, built),
        prefetch(prefetch_pages),
        load(sink, source.record_to_json, new_indices, prune=exclusive, in_flight=in_flight),
        park_dead_letters(dead_letters),
        resolve_dead_letters(dead_letters, [v.key for v in versions]),
        advance(starts),
        checkpoint(cursors, on_page),
    )
    if max_pages is not None:
        pages = islice(pages, max_pages)

    result = SyncResult(
        {v.key: VersionTotals(cursor=starts.get(v.key)) for v in versions},
        watermark.below,
    )
    with fewer_collections(extractor.page_size) as page_done:
        for progress in pipeline(pages):
            page_done()  # the page is acknowledged and checkpointed: a collection, now and then
            result.pages += 1
            for key, vp in progress.versions.items():
                totals = result.versions[key]
                totals.cursor = vp.cursor
                totals.add(vp.counts)

    # The feed says it ran out (before handing on its last page), or the budget was not used up.
    result.caught_up = max_pages is None or extractor.drained or result.pages < max_pages
    if shard is not None:
        if result.caught_up:  # the shard's range is walked: mark it done, at the plan's hand-over
            done = LogCursor.done(shard.snapshot)
            cursors.save({v.key: done for v in versions})
            for totals in result.versions.values():
                totals.cursor = done
    elif result.caught_up:
        sink.finish_backfill(versions, {k for k, t in result.versions.items() if t.indexed or t.deleted})
    result.rows_read = extractor.rows - rows_before
    result.truncated = tuple(sorted(extractor.truncated - truncated_before))
    result.statements = extractor.statements - statements_before
    result.duration_s = time.perf_counter() - began
    event(
        "sync_finished",
        pages=result.pages,
        rows=result.rows_read,
        duration_s=round(result.duration_s, 3),
        caught_up=result.caught_up,
        **{f"{k}_indexed": t.indexed for k, t in result.versions.items()},
    )
    return result
