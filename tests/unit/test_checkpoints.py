"""Checkpoints saved beside the pipeline: in order, the newest first, every one before the end."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from etl_core import sync
from etl_core.errors import StateUnavailable
from etl_core.flow.progress import Checkpoints
from etl_core.model.cursor import Cursor, Position
from tests.unit.fakes import ListExtractor, MemoryCursorStore, MemoryDeadLetters, MemorySink, at
from tests.unit.models import SOURCE, version

ROWS = [(i, f"item {i}", 1, at(i), None) for i in range(1, 9)]


class SlowStore(MemoryCursorStore):
    """Each save waits until told to go on: pages acknowledged meanwhile queue up."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def save(self, cursors: Mapping[str, Position]) -> None:
        assert self.go.wait(timeout=5)
        super().save(cursors)


def test_pages_acknowledged_during_a_save_are_saved_once_as_the_newest() -> None:
    store = SlowStore()
    saver = Checkpoints(store)
    for i in range(1, 5):
        saver.put({"v1": Cursor(at(i), i)})
    store.go.set()
    saver.close()
    saved = [s["v1"] for s in store.saves]
    assert saved[-1] == Cursor(at(4), 4) and saved == sorted(saved) and len(saved) <= 2


class FailingStore(MemoryCursorStore):
    def save(self, cursors: Mapping[str, Position]) -> None:
        raise StateUnavailable("the state database is gone")


def test_a_failed_save_fails_the_run() -> None:
    with pytest.raises(StateUnavailable, match="state database is gone"):
        sync(
            [version("v1")],
            extractor=ListExtractor(SOURCE, ROWS, page_size=2),
            sink=MemorySink(),
            dead_letters=MemoryDeadLetters(),
            cursors=FailingStore(),
        )
    saver = Checkpoints(FailingStore())
    saver.put({"v1": Cursor(at(1), 1)})
    with pytest.raises(StateUnavailable):
        saver.close()


def test_a_run_failing_elsewhere_keeps_what_was_acknowledged_before() -> None:
    store = SlowStore()
    saver = Checkpoints(store)
    saver.put({"v1": Cursor(at(2), 2)})
    store.go.set()
    saver.close(failing=True)
    assert store.load(["v1"]) == {"v1": Cursor(at(2), 2)}
    failing = Checkpoints(FailingStore())
    failing.put({"v1": Cursor(at(2), 2)})
    failing.close(failing=True)  # logged, not raised over the run's own error
