"""Fewer garbage collections while a sync runs: the pages in flight are alive, not garbage.

CPython (3.11) collects its youngest generation whenever 700 more container objects are alive
than at the last collection. A sync keeps a few pages in flight, each a thousand rows of records,
documents and actions, so the collector ran a dozen times per page and traversed objects that
were all still alive, promoting them to older generations that it then traversed again: 6.8 of
24.7 µs of Python CPU per document for one version, 15.6 of 48 for three (benchmarks/README.md).
A page's objects are freed by reference counting once the page is done; the collector is only
needed for reference cycles, which the stages do not make. So while a sync runs, the youngest
generation's threshold is raised above what the pages in flight hold, and put back when the last
sync of the process ends. Cyclic garbage made meanwhile (by anything in the process) is still
collected, later: at most the threshold's worth of objects waits for it.

The collector belongs to the process, not to a library: a sync changes it only where the process
has said so with :func:`tune_for_syncs` — the command line and the Dagster code location do, an
application that embeds ``etl_core`` keeps its own setting unless it calls it too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

OBJECTS_PER_ROW = 50
"""Container objects a row may hold while its page is in flight, with room to spare: its record,
change and position, each version's document and action, and the pages the prefetch keeps
ahead. Measured: a page size of 1 000 needs a threshold above 20 000 to stop collections, 5 000
one above 50 000 (benchmarks/README.md)."""

MAX_THRESHOLD = 1_000_000

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


@contextmanager
def fewer_collections(page_size: int) -> Iterator[None]:
    """Raise the youngest generation's threshold for the duration (never lower it); syncs may
    overlap in one process (threads), so the setting found before the first is restored when the
    last one ends. Does nothing unless the process called :func:`tune_for_syncs`."""
    global _active, _saved
    if not _tuned:
        yield
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
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
