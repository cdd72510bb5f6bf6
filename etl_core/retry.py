"""One retry layer for every service call: tenacity's loop, our backoff policy.

The extractor, the sink and the state stores all retry through :func:`call_with_retry`, and the
OpenSearch client's own retries are off (``make_client``), so a budget is one number, never two
multiplied."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from etl_core.errors import ConfigError
from etl_core.logs import event

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """``attempts`` tries in all; waits grow ``initial · 2ⁿ`` up to ``maximum``, with ±25 % jitter
    so that several syncs retrying the same node do not hammer it in lockstep."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 15.0

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based), before jitter."""
        return min(self.maximum, self.initial * 2.0 ** (attempt - 1))


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
    is not retryable. The loop is tenacity's; the policy (budget, delays, jitter) is
    :class:`Backoff`'s. Each retry is logged as the event ``log_as`` (never with the error's
    text, which may quote a connection string)."""

    def wait(state: RetryCallState) -> float:
        # tenacity asks for the next delay before it checks the budget, the last attempt too
        return backoff.delay(state.attempt_number) * random.uniform(0.75, 1.25)

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        event(
            log_as,
            what=what,
            attempt=state.attempt_number,
            delay_s=round(state.upcoming_sleep, 2),
            error=type(error).__name__,
            status=getattr(error, "status_code", None),
        )

    retrying = Retrying(
        stop=stop_after_attempt(backoff.attempts),
        wait=wait,
        retry=retry_if_exception(retry_on),
        before_sleep=log,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)


# What a server says when it refuses a connection for good: retrying cannot help, and the
# user needs the cause, not "could not be reached". (psycopg gives no SQLSTATE for these.)
_REFUSALS = (  # the first marker a line holds decides: the specific ones come first
    ("password authentication failed", "check the user and password in {variable}"),
    ("no password supplied", "put the password in {variable}"),
    ("authentication failed", "check the user and the credentials (certificate, ident) in {variable}"),
    ("pg_hba.conf", "the server's pg_hba.conf does not let this host and user in (ask its DBA)"),
    ("is not permitted to log in", "the user of {variable} may not log in (ALTER ROLE … LOGIN)"),
    ("permission denied for database", "GRANT CONNECT ON DATABASE to the user of {variable}"),
    ("database", "check the database name in {variable}, or create the database"),
    ("role", "check the user in {variable}"),
)
_FOR_GOOD = 6  # the markers above that are refusals whatever follows ("does not exist" is too)


def connection_refusal(exc: BaseException) -> str | None:
    """The server's own line when it refused the connection for good (a wrong password, a
    database or user that does not exist, pg_hba.conf), else None. Never the connection string:
    only what follows the server's ``FATAL:``."""
    if isinstance(exc, OperationalError):
        text = str(exc.orig)
    elif isinstance(exc, psycopg.OperationalError):  # a raw connection (the follower's LISTEN)
        text = str(exc)
    else:
        return None
    if "no password supplied" in text:  # libpq's own, before any server line
        return "no password supplied"
    if "FATAL:" not in text:
        return None
    line = text.split("FATAL:", 1)[1].strip().splitlines()[0].strip()
    # "too many connections", "the database system is starting up / shutting down / in recovery":
    # they pass, so they are retried like an outage
    if "does not exist" in line or any(m in line for m, _ in _REFUSALS[:_FOR_GOOD]):
        return line
    return None


def refusal_fix(line: str, variable: str) -> str:
    for marker, fix in _REFUSALS:
        if marker in line:
            return fix.format(variable=variable)
    return f"check {variable}"


def refused_connection(exc: BaseException, variable: str) -> ConfigError | None:
    """The one-line error for a connection refused for good, naming the variable and the fix."""
    line = connection_refusal(exc)
    if line is None:
        return None
    fix = refusal_fix(line, variable)
    return ConfigError(
        f"PostgreSQL refused the connection of {variable}: {line}. "
        f"{fix[:1].upper()}{fix[1:]}; nothing was read or written"
    )


def transient_db_error(exc: BaseException) -> bool:
    """Connection-level failures are worth retrying (a server down, a connection cut); a SQL
    error is not, nor a connection the server refused for good (:func:`connection_refusal`)."""
    if isinstance(exc, OperationalError):
        return connection_refusal(exc) is None
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def server_message(exc: DBAPIError) -> str:
    """The server's message without the statement or its parameters (which may hold data)."""
    text = str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ""
    return f"{type(exc.orig).__name__}: {text}"
