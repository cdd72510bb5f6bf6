"""The sync's collector setting: fewer collections while pages are in flight, restored after."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from etl_core import sync
from etl_core.flow.collector import fewer_collections, threshold_for, tune_for_syncs
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


def _sync_20k(rows: list[tuple[Any, ...]]) -> None:
    result = sync(
        [version("v1"), version("v2")],
        extractor=ListExtractor(SOURCE, rows, page_size=1000),
        sink=MemorySink(),
        dead_letters=MemoryDeadLetters(),
        cursors=MemoryCursorStore(),
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


def test_an_embedding_application_keeps_its_own_collector_setting(collections: list[int]) -> None:
    """A library does not change the whole process: without the opt-in a sync leaves the
    threshold alone, and the interpreter collects as it always does."""
    tune_for_syncs(False)  # as a process that never opted in (a Dagster run in this one did)
    before = gc.get_threshold()
    with fewer_collections(1000):
        assert gc.get_threshold() == before
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
