"""Overlap: run the upstream stages in a worker thread, a bounded number of items ahead.

While the bulk request of page *n* is in flight (waiting on OpenSearch, the GIL released), the
worker extracts, normalises and transforms page *n + 1*. Order is kept and the queue is bounded,
so memory stays flat and the stages after this one (load, dead letters, cursors) still see pages
one by one, in order: cursors move exactly as without it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(depth: int = 2) -> Callable[[Iterator[T]], Iterator[T]]:
    def stage(items: Iterator[T]) -> Iterator[T]:
        slots: queue.Queue[object] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for item in items:
                    if not put(item):
                        return
                put(_DONE)
            except BaseException as error:  # handed to the consumer, raised in its thread
                put(_Failed(error))

        worker = threading.Thread(target=work, name="etl-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = slots.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            stop.set()  # the consumer stopped or failed: let the worker finish its page and go
            worker.join()

    return stage
