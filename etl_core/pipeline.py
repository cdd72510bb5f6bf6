"""The sync: one extraction feeding every version of a lane, composed from the stages.

pages → normalise → route (filter + transform per version) → load (_bulk) → dead letters
      → advance cursors → checkpoint
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial, reduce
from itertools import islice
from typing import Any, TypeVar

from etl_core.cursor import Cursor, lowest
from etl_core.extract import Extractor, normalise
from etl_core.load import load, park_dead_letters, resolve_dead_letters
from etl_core.logs import event
from etl_core.model import PageProgress
from etl_core.prefetch import prefetch
from etl_core.progress import advance, checkpoint
from etl_core.protocols import CursorStore, DeadLetterStore, Sink, Stage
from etl_core.route import route
from etl_core.versions import IndexVersion, validate_versions

R = TypeVar("R")


def compose(*stages: Stage[Any, Any]) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """Left-to-right composition of stream stages: ``compose(f, g)(xs) == g(f(xs))``."""
    return lambda items: reduce(lambda stream, stage: stage(stream), stages, items)


@dataclass(slots=True)
class VersionTotals:
    cursor: Cursor | None
    indexed: int = 0
    deleted: int = 0
    not_found: int = 0
    stale: int = 0
    dead_letters: int = 0


@dataclass(slots=True)
class SyncResult:
    """What one run did, per version and in all; the orchestration layer turns it into metadata."""

    versions: dict[str, VersionTotals]
    watermark: datetime
    pages: int = 0
    rows_read: int = 0
    statements: int = 0
    caught_up: bool = True
    duration_s: float = 0.0


def sync(
    versions: Sequence[IndexVersion[R]],
    *,
    extractor: Extractor[R],
    sink: Sink,
    dead_letters: DeadLetterStore,
    cursors: CursorStore,
    max_pages: int | None = None,
    on_page: Callable[[PageProgress], None] | None = None,
    prefetch_pages: int = 2,
) -> SyncResult:
    """Bring every version of the lane up to the source's high watermark with one extraction.

    Reads each version's cursor, starts at the slowest one, and sends each page once to the
    database for all versions. Raises :class:`~etl_core.errors.ServiceUnavailable` (after retries)
    without moving any cursor past an unacknowledged page.
    """
    began = time.perf_counter()
    source = extractor.source
    validate_versions(versions, source.fields)
    new_indices = sink.ensure_indices(versions)

    starts = cursors.load(v.key for v in versions)
    start = lowest(list(starts.values()))
    statements_before = extractor.statements
    rows_before = extractor.rows
    watermark = extractor.watermark()
    event(
        "sync_started",
        versions=[v.key for v in versions],
        start=start and start.to_json(),
        watermark=watermark.below.isoformat(),
    )

    pipeline = compose(
        partial(normalise, source),
        route(versions, starts, source.record_to_json),
        prefetch(prefetch_pages),
        load(sink, source.record_to_json, new_indices),
        park_dead_letters(dead_letters),
        resolve_dead_letters(dead_letters, [v.key for v in versions]),
        advance(starts),
        checkpoint(cursors, on_page),
    )
    raw_pages: Iterable[Any] = extractor.pages(start, watermark.below)
    if max_pages is not None:
        raw_pages = islice(raw_pages, max_pages)

    result = SyncResult(
        {v.key: VersionTotals(starts.get(v.key)) for v in versions},
        watermark.below,
    )
    last_rows = extractor.page_size
    for progress in pipeline(iter(raw_pages)):
        result.pages += 1
        last_rows = progress.rows
        for key, vp in progress.versions.items():
            totals = result.versions[key]
            totals.cursor = vp.cursor
            totals.indexed += vp.indexed
            totals.deleted += vp.deleted
            totals.not_found += vp.not_found
            totals.stale += vp.stale
            totals.dead_letters += vp.dead_letters

    # A short (or no) last page means the extraction reached the watermark.
    result.caught_up = max_pages is None or result.pages < max_pages or last_rows < extractor.page_size
    if result.caught_up:
        for version in versions:
            sink.finish_backfill(version)
    result.rows_read = extractor.rows - rows_before
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
