from __future__ import annotations

import threading
from collections.abc import Generator, Iterator

import pytest

from etl_core.flow.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        for i in range(100):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(3)(produce())) == list(range(100))
    assert threads == {"etl-prefetch"}


def test_an_upstream_error_is_raised_to_the_consumer_after_the_good_items() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("source went away")

    seen = []
    with pytest.raises(ConnectionError, match="source went away"):
        for item in prefetch(1)(produce()):
            seen.append(item)
    assert seen == [1, 2]


def test_the_worker_stops_when_the_consumer_stops_and_stays_bounded() -> None:
    produced = []

    def produce() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(2)(produce())
    assert isinstance(stream, Generator)
    assert next(stream) == 0
    stream.close()  # e.g. the sink failed downstream
    assert len(produced) <= 5  # one handed over, two queued, one in hand: never the whole table
    assert not any(t.name == "etl-prefetch" for t in threading.enumerate())
