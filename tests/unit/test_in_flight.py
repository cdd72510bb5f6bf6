"""Several pages' writes on their way at once: overlap, yet acknowledgement in page order."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

from etl_core import sync
from etl_core.errors import StateUnavailable
from etl_core.flow.route import route_page
from etl_core.model.cursor import Cursor, Position
from etl_core.model.records import Action, Outcome, RoutedPage
from etl_core.read.column_feed import normalise
from etl_core.write.load import load
from tests.unit.fakes import ListExtractor, MemoryCursorStore, MemoryDeadLetters, MemorySink, at
from tests.unit.models import SOURCE, Item, version

ROWS = [(i, f"item {i}", 1, at(i), at(i) if i % 2 == 0 else None) for i in range(1, 7)]


class SlowFirstSink(MemorySink):
    """The first write waits until the second has been answered (or 5 s): the second page's
    write can only finish first if the two were on their way together."""

    def __init__(self, wait_s: float = 5.0) -> None:
        super().__init__()
        self.wait_s = wait_s
        self.second_done = threading.Event()
        self.overlapped = False
        self.answered: list[int] = []
        self._calls = 0
        self._lock = threading.Lock()

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        with self._lock:
            self._calls += 1
            call = self._calls
        if call == 1:
            self.overlapped = self.second_done.wait(timeout=self.wait_s)
        out = super().write(actions)
        self.answered.append(call)
        if call == 2:
            self.second_done.set()
        return out


def test_the_next_page_is_sent_before_the_last_is_acknowledged_and_cursors_keep_page_order() -> None:
    sink, store = SlowFirstSink(), MemoryCursorStore()
    result = sync(
        [version("v1")],
        extractor=ListExtractor(SOURCE, ROWS, page_size=2),
        sink=sink,
        dead_letters=MemoryDeadLetters(),
        cursors=store,
        in_flight=2,
    )
    assert sink.overlapped and sink.answered[:2] == [2, 1]  # page 2 was answered before page 1
    # ...yet no checkpoint passed page 1 before it was answered: saves follow the pages' order
    # (one save may cover several pages acknowledged while the one before it was on its way)
    saved = [s["v1"] for s in store.saves]
    ends = [Cursor(at(2), 2), Cursor(at(4), 4), Cursor(at(6), 6)]
    assert saved == sorted(saved) and set(saved) <= set(ends) and saved[-1] == ends[-1]
    assert result.versions["v1"].indexed == 3 and result.versions["v1"].not_found == 3


def test_one_in_flight_sends_the_next_page_only_after_the_last_is_answered() -> None:
    sink = SlowFirstSink(wait_s=0.2)  # the second write cannot start while the first waits
    sync(
        [version("v1")],
        extractor=ListExtractor(SOURCE, ROWS, page_size=2),
        sink=sink,
        dead_letters=MemoryDeadLetters(),
        cursors=MemoryCursorStore(),
        in_flight=1,
    )
    assert not sink.overlapped and sink.answered == [1, 2, 3]


class ProbeWatchingSink(MemorySink):
    """Records how many writes were on their way each time documents were probed."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.during_probe: list[int] = []
        self._lock = threading.Lock()

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        with self._lock:
            self.active += 1
        try:
            threading.Event().wait(0.05)  # long enough for a racing probe to be seen
            return super().write(actions)
        finally:
            with self._lock:
                self.active -= 1

    def existing(self, index: str, ids: Sequence[str]) -> set[str]:
        self.during_probe.append(self.active)
        return super().existing(index, ids)


def test_a_page_that_may_revisit_keys_waits_for_the_writes_before_it() -> None:
    """A log page may delete a key an earlier page of the run just wrote: its probe for existing
    documents must see that write, so it is not sent while earlier writes are in flight."""
    sink = ProbeWatchingSink()
    page = next(normalise(SOURCE, iter([ROWS])))
    revisit = dataclasses.replace(page, number=2, first_visit=False)
    pages: list[RoutedPage[Item]] = [
        route_page(p, [version("v1")], {}, SOURCE.record_to_json) for p in (page, revisit, revisit)
    ]
    stage = load(sink, SOURCE.record_to_json, prune=True, in_flight=2)
    done = list(stage(iter(pages)))
    assert len(done) == 3
    assert sink.during_probe == [0, 0, 0]


def _log_pages(batches: Sequence[str]) -> list[RoutedPage[Item]]:
    """Pages of distinct keys marked as log pages of the given batches, one page each."""
    pages = list(normalise(SOURCE, iter([ROWS[i : i + 2] for i in range(0, len(ROWS), 2)])))
    return [
        route_page(
            dataclasses.replace(p, first_visit=False, batch=b), [version("v1")], {}, SOURCE.record_to_json
        )
        for p, b in zip(pages, batches, strict=True)
    ]


def test_the_pages_of_one_log_batch_are_in_flight_together() -> None:
    """A batch's pages hold distinct root keys: the second is sent before the first is answered,
    and they are still acknowledged in order."""
    sink = SlowFirstSink()
    done = list(load(sink, SOURCE.record_to_json, prune=True, in_flight=2)(iter(_log_pages(["b1"] * 3))))
    assert sink.overlapped and sink.answered[:2] == [2, 1]
    assert [r.page.number for r in done] == [1, 2, 3]


def test_the_first_page_of_another_batch_waits_for_the_writes_before_it() -> None:
    """The next batch may hold a key the last one wrote: its probe must see that write."""
    sink = ProbeWatchingSink()
    done = list(
        load(sink, SOURCE.record_to_json, prune=True, in_flight=2)(iter(_log_pages(["b1", "b2", "b3"])))
    )
    assert len(done) == 3
    assert sink.during_probe == [0, 0, 0]
    slow = SlowFirstSink(wait_s=0.2)
    list(load(slow, SOURCE.record_to_json, prune=True, in_flight=2)(iter(_log_pages(["b1", "b2", "b2"]))))
    assert not slow.overlapped and slow.answered[0] == 1


class SlowSecondSink(MemorySink):
    """The second page's write takes a while; ``second_began`` is set when it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: list[int] = []
        self.second_began = threading.Event()
        self._calls = 0

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        self._calls += 1
        call = self._calls
        if call == 2:
            self.second_began.set()
            threading.Event().wait(0.3)
        out = super().write(actions)
        self.answered.append(call)
        return out


class RefusingCursorStore(MemoryCursorStore):
    """The state database refuses the first checkpoint, once the second page's write is on its
    way (a write not yet begun is simply not sent)."""

    def __init__(self, sink: SlowSecondSink) -> None:
        super().__init__()
        self.sink = sink

    def save(self, cursors: Mapping[str, Position]) -> None:
        assert self.sink.second_began.wait(timeout=5)
        raise StateUnavailable("state database told to fail")


def test_a_failure_after_the_writes_leaves_no_write_running_once_the_sync_has_raised() -> None:
    """A caller releases the lane when the error reaches it: no write of the run may land later."""
    sink = SlowSecondSink()
    caught: StateUnavailable | None = None
    try:
        sync(
            [version("v1")],
            extractor=ListExtractor(SOURCE, ROWS, page_size=2),
            sink=sink,
            dead_letters=MemoryDeadLetters(),
            cursors=RefusingCursorStore(sink),
            in_flight=2,
        )
    except StateUnavailable as error:
        caught = error  # a caller keeps the error to report it (Dagster does), and its traceback
    assert caught is not None
    # page 2's write had begun when the save failed (page 3's may have: saves run beside the
    # writes); every write that began ended before the error left, and no thread of the run is left
    assert {1, 2} <= set(sink.answered) <= {1, 2, 3}
    assert not [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("etl-bulk", "etl-prefetch", "etl-checkpoints"))
    ]
