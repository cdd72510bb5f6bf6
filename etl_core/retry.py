"""Exponential backoff with jitter, shared by the extractor and the sink."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from etl_core.logs import event

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """``attempts`` tries in all; waits grow ``initial · 2ⁿ`` up to ``maximum``, with ±25 % jitter
    so that several syncs retrying the same node do not hammer it in lockstep."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 15.0

    def delays(self) -> list[float]:
        return [min(self.maximum, self.initial * 2**n) for n in range(self.attempts - 1)]


DEFAULT_BACKOFF = Backoff()


def call_with_retry(
    fn: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    backoff: Backoff,
    log_as: str = "retry",
    what: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it returns; re-raise the last error once the budget is spent or the error
    is not retryable. Each retry is logged as the event ``log_as`` (never with the error's text,
    which may quote a connection string)."""
    delays = backoff.delays()
    for attempt in range(backoff.attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt >= len(delays) or not retry_on(exc):
                raise
            delay = delays[attempt] * random.uniform(0.75, 1.25)
            event(
                log_as,
                what=what,
                attempt=attempt + 1,
                delay_s=round(delay, 2),
                error=type(exc).__name__,
                status=getattr(exc, "status_code", None),
            )
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def transient_db_error(exc: BaseException) -> bool:
    """Connection-level failures are worth retrying; a SQL error is not."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
