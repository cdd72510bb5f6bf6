"""Follow mode: sync within about a second of a commit, and stay silent while nothing changes.

The generated triggers ``NOTIFY`` the source's channel once per statement; PostgreSQL delivers a
notification when its transaction commits. A follower ``LISTEN``s on a connection of its own,
syncs on each wake-up (debounced, so a burst of commits costs one sync), and ends after a window
so that runs stay finite and their history readable: the next follower takes over from the
cursors. While idle it sends nothing, except one poll every ``idle_s`` as a safety net.

A commit whose entries sit above the snapshot bound (an older transaction still open) is not
readable yet, and its notification is already spent; so after a sync that leaves entries unread,
the follower polls again soon, backing off, until they are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from etl_core.errors import SourceUnavailable
from etl_core.logs import event
from etl_core.pipeline import SyncResult


class Listener:
    """A dedicated autocommit connection that ``LISTEN``s on one channel."""

    def __init__(self, url: URL, channel: str) -> None:
        self.channel = channel
        try:
            params: dict[str, Any] = {k: v for k, v in url.query.items() if isinstance(v, str)}
            params.update(
                host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
            )
            self.conn = psycopg.connect(make_conninfo(**{k: v for k, v in params.items() if v is not None}))
            self.conn.autocommit = True
            self.conn.execute(f'LISTEN "{channel}"')
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(
                f"could not LISTEN on {channel!r}: {type(exc).__name__}. Check SOURCE_DATABASE_URL"
            ) from None

    def wait(self, timeout: float) -> int:
        """Block until a notification arrives or ``timeout`` passes; how many arrived."""
        if timeout <= 0:
            return 0
        return sum(1 for _ in self.conn.notifies(timeout=timeout, stop_after=1))

    def drain(self, within: float) -> int:
        """Swallow the notifications of a burst: whatever arrives in the next ``within`` seconds."""
        return sum(1 for _ in self.conn.notifies(timeout=within)) if within > 0 else 0

    def close(self) -> None:
        self.conn.close()


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
        retry_s = min(max(retry_s * 2, 0.1), idle_s) if pending(result) else 0.0

    once()
    while (left := deadline - time.monotonic()) > 0:
        woke = listener.wait(min(retry_s or idle_s, left))
        if woke:
            out.wakeups += 1
            listener.drain(debounce_s)
        else:
            out.polls += 1
        if time.monotonic() >= deadline:
            break
        once()
    event("follow_finished", syncs=out.syncs, wakeups=out.wakeups, polls=out.polls, indexed=out.indexed)
    return out
