"""One writer per version: PostgreSQL advisory locks held for a whole sync or follow window.

Two syncs of one version at once would each be correct on its own, and the cursor merge keeps
positions monotonic, but together they can undo a delete: one skips a delete because the index
has no such document yet, while the other's older write of it is still in flight. So a sync
that prunes deletes (``sync(exclusive=True)``) must be the only writer of its versions. Dagster's
pool is the first line; these locks make the command line, a second code location or a stray
run refuse with a clear error instead. A killed process's connection drops, and with it the lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from etl_core.errors import EtlError, StateUnavailable
from etl_core.logs import event
from etl_core.model.versions import IndexVersion
from etl_core.state.stores import StateSchema

_NAMESPACE = "etl_core.lane"
# A two-key advisory lock shows in pg_locks as (classid, objid, objsubid = 2).
_HOLDER = text(
    "SELECT min(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND classid = hashtext(:ns)::oid AND objid = hashtext(:key)::oid"
)


class LaneBusy(EtlError):
    """Another process is syncing one of these versions right now."""


class PostgresLaneLock:
    """Session-level advisory locks on the state database, one per version's index."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state

    @contextmanager
    def hold(self, versions: Sequence[IndexVersion[Any]], *, shared: bool = False) -> Iterator[None]:
        """All the versions' locks, or :class:`LaneBusy` naming the version and the holder.

        ``shared``: the shards of one sharded backfill write disjoint keys of the same versions,
        so they hold the locks together; any sync, follower or command holding them exclusively
        waits them all out (and they it)."""
        take, release = (
            (func.pg_try_advisory_lock_shared, func.pg_advisory_unlock_shared)
            if shared
            else (func.pg_try_advisory_lock, func.pg_advisory_unlock)
        )
        keys = sorted({(f"{self.state.schema}:{v.index}", v.key) for v in versions})
        conn = self.state.call(
            "taking the lane lock",
            lambda: self.state.engine.connect().execution_options(isolation_level="AUTOCOMMIT"),
        )
        taken: list[str] = []
        try:
            for key, version in keys:
                lock = (func.hashtext(_NAMESPACE), func.hashtext(key))
                try:
                    got = conn.execute(select(take(*lock))).scalar_one()
                    holder = None if got else conn.execute(_HOLDER, {"ns": _NAMESPACE, "key": key}).scalar()
                except DBAPIError as exc:
                    raise StateUnavailable(
                        f"the lane lock of version {version!r} could not be taken "
                        f"({type(exc.orig).__name__}); check {self.state.variable}. No cursor was moved"
                    ) from None
                if not got:
                    raise LaneBusy(
                        f"version {version!r} is being synced by another process (PostgreSQL backend "
                        f"pid {holder}); wait for it to finish, or stop it. Two syncs of one version at "
                        "once could undo each other's deletes"
                    )
                taken.append(key)
            yield
        finally:
            try:
                for key in taken:
                    conn.execute(select(release(func.hashtext(_NAMESPACE), func.hashtext(key))))
            except DBAPIError:
                # the lock's connection was cut (a restart, a terminated backend): PostgreSQL
                # released the locks with the session; nothing is left to unlock
                event("lane_lock_lost", versions=[version for _, version in keys])
            finally:
                conn.close()
