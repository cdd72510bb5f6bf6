"""The sync's collector setting: no collections while pages are in flight, one at page boundaries
now and then, the interpreter's setting restored after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from etl_core import sync
from etl_core.flow import collector
from etl_core.flow.collector import (
    fewer_collections,
    pages_between_collections,
    threshold_for,
    tune_for_syncs,
)
from etl_core.model.records import PageProgress
from tests.unit.fakes import ListExtractor, MemoryCursorStore, MemoryDeadLetters, MemorySink, at
from tests.unit.models import SOURCE, version


@pytest.fixture
def tuned() -> Iterator[None]:
    """This process opted in, as the command line and a Dagster run do."""
    tune_for_syncs()
    try:
        yield
    finally:
        tune_for_syncs(False)


def _rows() -> list[tuple[Any, ...]]:
    return [(i, f"item {i}", i % 7, at(i / 10), None) for i in range(1, 20_001)]


def _sync_20k(rows: list[tuple[Any, ...]], on_page: Any = None) -> None:
    result = sync(
        [version("v1"), version("v2")],
        extractor=ListExtractor(SOURCE, rows, page_size=1000),
        sink=MemorySink(),
        dead_letters=MemoryDeadLetters(),
        cursors=MemoryCursorStore(),
        on_page=on_page,
    )
    assert result.versions["v1"].indexed == result.versions["v2"].indexed == 20_000


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations of the collections that ran while the test did."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(int(info["generation"]))

    gc.collect()
    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)


def test_a_sync_of_pages_in_flight_runs_almost_no_collections(tuned: None, collections: list[int]) -> None:
    before = gc.get_threshold()
    rows = _rows()
    collections.clear()  # those that building the table ran
    _sync_20k(rows)
    # 40 000 documents kept by the sink and 20 pages of records, changes and actions: with the
    # interpreter's default threshold (700) this ran over a hundred collections
    assert len(collections) <= 3, collections
    assert gc.get_threshold() == before


class _Cycle:
    """Garbage only the collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def test_the_young_generations_are_collected_at_page_boundaries(
    tuned: None, collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``COLLECT_EVERY_ROWS`` rows, once a page is checkpointed: the little cyclic garbage a
    sync makes is freed while it runs (peak RSS flat in the rows synced), and the collections
    stay few (none of them while a page is half built)."""
    monkeypatch.setattr(collector, "COLLECT_EVERY_ROWS", 5_000)  # every 5 pages of 1 000
    assert pages_between_collections(1000) == 5
    rows = _rows()
    pages: list[int] = []
    at_collection: list[tuple[int, int]] = []  # (pages checkpointed, generation)
    garbage: list[weakref.ref[_Cycle]] = []
    collected_by: dict[int, int] = {}  # page that made the garbage -> pages checkpointed when gone

    def on_page(progress: PageProgress) -> None:
        pages.append(len(pages) + 1)
        for made, ref in enumerate(garbage, start=1):
            if ref() is None:
                collected_by.setdefault(made, len(pages))
        garbage.append(weakref.ref(_Cycle()))

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            at_collection.append((len(pages), int(info["generation"])))

    collections.clear()
    gc.callbacks.append(seen)
    try:
        _sync_20k(rows, on_page)
    finally:
        gc.callbacks.remove(seen)
    assert len(pages) == 20
    at_boundaries = [p for p, generation in at_collection if generation == 1]
    assert at_boundaries == [5, 10, 15, 20], at_collection
    assert len(collections) <= 3 + 4, collections
    # the garbage of pages 1-5 is gone by page 6's checkpoint, that of 6-10 by page 11's…
    assert all(collected_by[made] <= (made + 4) // 5 * 5 + 1 for made in range(1, 16)), collected_by
    assert all(ref() is None for ref in garbage)


def test_a_collection_at_page_boundaries_every_so_many_rows() -> None:
    assert pages_between_collections(1000) == collector.COLLECT_EVERY_ROWS // 1000
    assert pages_between_collections(collector.COLLECT_EVERY_ROWS * 2) == 1  # at least every page
    assert pages_between_collections(0) == collector.COLLECT_EVERY_ROWS


def test_an_embedding_application_keeps_its_own_collector_setting(collections: list[int]) -> None:
    """A library does not change the whole process: without the opt-in a sync leaves the
    threshold alone, and the interpreter collects as it always does."""
    tune_for_syncs(False)  # as a process that never opted in (a Dagster run in this one did)
    before = gc.get_threshold()
    with fewer_collections(1000) as page_done:
        assert gc.get_threshold() == before
        collections.clear()
        for _ in range(pages_between_collections(1000)):
            page_done()
        assert collections == []  # nor collects at page boundaries
    rows = _rows()
    collections.clear()  # those that building the table ran
    _sync_20k(rows)
    assert len(collections) > 10, collections
    assert gc.get_threshold() == before


def test_overlapping_syncs_restore_the_setting_when_the_last_one_ends(tuned: None) -> None:
    before = gc.get_threshold()
    with fewer_collections(1000):
        assert gc.get_threshold()[0] == max(before[0], threshold_for(1000))
        with fewer_collections(5000):
            assert gc.get_threshold()[0] == max(before[0], threshold_for(5000))
        assert gc.get_threshold()[0] >= threshold_for(1000)  # the first sync still runs
    assert gc.get_threshold() == before


def test_a_higher_setting_of_the_process_is_never_lowered() -> None:
    before = gc.get_threshold()
    gc.set_threshold(threshold_for(1000) * 4, *before[1:])
    try:
        with fewer_collections(1000):
            assert gc.get_threshold()[0] == threshold_for(1000) * 4
    finally:
        gc.set_threshold(*before)
