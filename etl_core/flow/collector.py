"""Fewer garbage collections while a sync runs: the pages in flight are alive, not garbage.

CPython (3.11) collects its youngest generation whenever 700 more container objects are alive
than at the last collection. A sync keeps a few pages in flight, each a thousand rows of records,
documents and actions, so the collector ran a dozen times per page and traversed objects that
were all still alive, promoting them to older generations that it then traversed again: 6.8 of
24.7 µs of Python CPU per document for one version, 15.6 of 48 for three (benchmarks/README.md).
A page's objects are freed by reference counting once the page is done; the collector is only
needed for reference cycles, which the stages do not make. So while a sync runs, the youngest
generation's threshold is raised above what the pages in flight hold, and put back when the last
sync of the process ends.

The threshold alone also left out the little cyclic garbage a page does make (about 150 objects:
the statements SQLAlchemy builds for it, a retry policy): it piled up between the rare
collections, and peak RSS grew with the rows synced. So the sync also calls back once each page
is acknowledged and checkpointed, and every :data:`COLLECT_EVERY_ROWS` rows that collects the two
young generations (``gc.collect(1)``): what is young then is the garbage and the few pages in
flight, so a collection costs about one traversal of them, a few milliseconds, once per 100 pages
of 1 000 rows (benchmarks/README.md, "Memory").

The collector belongs to the process, not to a library: a sync changes it only where the process
has said so with :func:`tune_for_syncs` — the command line and the Dagster code location do, an
application that embeds ``etl_core`` keeps its own setting unless it calls it too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

OBJECTS_PER_ROW = 50
"""Container objects a row may hold while its page is in flight, with room to spare: its record,
change and position, each version's document and action, and the pages the prefetch keeps
ahead. Measured: a page size of 1 000 needs a threshold above 20 000 to stop collections, 5 000
one above 50 000 (benchmarks/README.md)."""

MAX_THRESHOLD = 1_000_000

COLLECT_EVERY_ROWS = 100_000
"""Rows between two collections at page boundaries (at least every page)."""

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None
_tuned = False


def tune_for_syncs(enabled: bool = True) -> None:
    """Let this process's syncs raise the collector's threshold while they run (the command line
    and the Dagster code location call it at start; an embedding application may)."""
    global _tuned
    _tuned = enabled


def tuned() -> bool:
    return _tuned


def threshold_for(page_size: int) -> int:
    """The youngest generation's threshold for pages of ``page_size`` rows."""
    return min(max(page_size, 1) * OBJECTS_PER_ROW, MAX_THRESHOLD)


def pages_between_collections(page_size: int) -> int:
    """Pages of ``page_size`` rows between two collections at page boundaries."""
    return max(COLLECT_EVERY_ROWS // max(page_size, 1), 1)


def _nothing() -> None:
    pass


class _AtPageBoundaries:
    """Called once a page is done: collects the young generations every ``every`` pages."""

    __slots__ = ("every", "pages")

    def __init__(self, every: int) -> None:
        self.every = every
        self.pages = 0

    def __call__(self) -> None:
        self.pages += 1
        if self.pages % self.every == 0:
            gc.collect(1)


@contextmanager
def fewer_collections(page_size: int) -> Iterator[Callable[[], None]]:
    """Raise the youngest generation's threshold for the duration (never lower it), and yield
    what the sync calls once each page is done: it collects the young generations every
    :func:`pages_between_collections` pages. Syncs may overlap in one process (threads), so the
    setting found before the first is restored when the last one ends. Does nothing (the
    interpreter collects as it always does) unless the process called :func:`tune_for_syncs`."""
    global _active, _saved
    if not _tuned:
        yield _nothing
        return
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
        _active += 1
        first, *older = gc.get_threshold()
        wanted = threshold_for(page_size)
        if wanted > first:
            gc.set_threshold(wanted, *older)
    try:
        yield _AtPageBoundaries(pages_between_collections(page_size))
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
