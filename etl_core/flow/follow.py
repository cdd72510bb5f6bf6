"""Follow mode: sync within about a second of a commit, and stay silent while nothing changes.

The generated triggers ``NOTIFY`` the source's channel once per statement; PostgreSQL delivers a
notification when its transaction commits. A follower ``LISTEN``s on a connection of its own,
syncs on each wake-up (debounced, so a burst of commits costs one sync), and ends after a window
so that runs stay finite and their history readable: the next follower takes over from the
cursors. While idle it sends nothing, except one poll every ``idle_s`` as a safety net.

A commit that lands while a sync runs may fall after that sync's batch snapshot, with its
notification swallowed by the debounce; so after a sync that leaves committed entries unread, the
follower syncs again soon: 50 ms after a sync that made progress, backing off to at most
``PENDING_MAX_S`` otherwise, never to the idle interval. Nothing open elsewhere on the server
delays a commit (:mod:`etl_core.model.snapshot`): a long transaction's own entries arrive when it
commits, with its notification.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from etl_core.errors import SourceRefused, SourceUnavailable
from etl_core.flow.pipeline import SyncResult
from etl_core.logs import event
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry, connection_refusal, refused_connection

# What a dropped connection raises: the server went away (Operational), or psycopg already knows
# the connection is closed (Interface).
_DROPPED = (psycopg.OperationalError, psycopg.InterfaceError)


class Listener:
    """A dedicated autocommit connection that ``LISTEN``s on one channel."""

    def __init__(self, url: URL, channel: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.url = url
        self.channel = channel
        self.backoff = backoff
        self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        """Connect and LISTEN, with the one retry policy: a server restarting ("the database
        system is starting up") is waited for as any outage is, so a follower survives a short
        restart; a connection refused for good fails at once, naming the cause."""
        url, channel = self.url, self.channel
        params: dict[str, Any] = {k: v for k, v in url.query.items() if isinstance(v, str)}
        params.update(
            host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
        )
        conninfo = make_conninfo(**{k: v for k, v in params.items() if v is not None})

        def once() -> psycopg.Connection[Any]:
            conn = psycopg.connect(conninfo)
            conn.autocommit = True
            conn.execute(f'LISTEN "{channel}"')
            return conn

        def outage(exc: BaseException) -> bool:
            return isinstance(exc, psycopg.OperationalError) and connection_refusal(exc) is None

        try:
            self.conn = call_with_retry(
                once, retry_on=outage, backoff=self.backoff, log_as="listen_retry", what=f"LISTEN {channel}"
            )
        except psycopg.OperationalError as exc:
            refused = refused_connection(exc, "SOURCE_DATABASE_URL")
            if refused is not None:
                raise refused from None
            raise SourceUnavailable(
                f"could not LISTEN on {channel!r} after {self.backoff.attempts} attempts: "
                f"{type(exc).__name__}. Check that the server is up and SOURCE_DATABASE_URL points at it"
            ) from None
        except psycopg.Error as exc:
            raise SourceRefused(
                f"PostgreSQL refused LISTEN on {channel!r}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc) else ''}"
            ) from None

    def wait(self, timeout: float) -> int:
        """Block until a notification arrives or ``timeout`` passes; how many arrived. A dropped
        connection (a restart, a terminated backend) is reopened and counts as a wake-up: what
        was notified meanwhile is lost, so the follower syncs to catch up."""
        if timeout <= 0:
            return 0
        try:
            return sum(1 for _ in self.conn.notifies(timeout=timeout, stop_after=1))
        except _DROPPED:
            self._reopen()
            return 1

    def drain(self, within: float) -> int:
        """Swallow the notifications of a burst: whatever arrives in the next ``within`` seconds."""
        if within <= 0:
            return 0
        try:
            return sum(1 for _ in self.conn.notifies(timeout=within))
        except _DROPPED:
            self._reopen()
            return 1

    def _reopen(self) -> None:
        self.reconnects += 1
        event("listen_reconnect", channel=self.channel, reconnects=self.reconnects)
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self._connect()

    def close(self) -> None:
        self.conn.close()


PENDING_FIRST_S = 0.05
PENDING_MAX_S = 2.0


@dataclass
class FollowResult:
    syncs: int = 0
    wakeups: int = 0
    polls: int = 0
    indexed: int = 0
    results: list[SyncResult] = field(default_factory=list)


def follow(
    run_sync: Callable[[], SyncResult],
    listener: Listener,
    *,
    window_s: float,
    pending: Callable[[SyncResult], bool],
    debounce_s: float = 0.05,
    idle_s: float = 30.0,
    keep_results: bool = False,
) -> FollowResult:
    """Sync now, then on every wake-up until ``window_s`` has passed.

    ``pending(result)`` says whether entries are waiting past the synced cursors (one cheap
    query); it is asked only after a sync, so an idle follower sends one poll per ``idle_s`` and nothing else.
    """
    deadline = time.monotonic() + window_s
    out = FollowResult()
    retry_s = 0.0

    def once() -> None:
        nonlocal retry_s
        result = run_sync()
        out.syncs += 1
        out.indexed += sum(t.indexed for t in result.versions.values())
        if keep_results:
            out.results.append(result)
        if not pending(result):
            retry_s = 0.0
        elif result.rows_read or not retry_s:
            retry_s = PENDING_FIRST_S  # progress: whatever is left is probably about to be readable
        else:
            retry_s = min(retry_s * 2, PENDING_MAX_S)

    once()
    while (left := deadline - time.monotonic()) > 0:
        woke = listener.wait(min(retry_s or idle_s, left))
        if time.monotonic() >= deadline:
            break
        if woke:
            out.wakeups += 1
            listener.drain(debounce_s)
        else:
            out.polls += 1
        once()
    event("follow_finished", syncs=out.syncs, wakeups=out.wakeups, polls=out.polls, indexed=out.indexed)
    return out
