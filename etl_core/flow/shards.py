"""Sharded backfills: one lane's walk of the source split into K key ranges that run at once.

A version that is built from nothing walks the source by key under a snapshot, then hands over to
the change log at that snapshot. A sharded backfill keeps that contract and splits only the walk:

1. :func:`plan_shards` takes the snapshot once (:mod:`etl_core.model.snapshot`), creates the
   versions' indices, and cuts the root keys into K ranges at their quantiles (one statement on
   the root table);
2. each :func:`sync_shard` walks its range under that snapshot, as any backfill does (the same
   pipeline, documents versioned by the snapshot each page was read under), keeping its own
   progress in the cursor store under the shard's name, so a killed shard resumes where it
   stopped and a finished one does nothing; shards hold the lane lock *shared*, so they run
   together but never beside another writer of the same versions;
3. :func:`hand_over` checks that every shard is done and moves the versions' cursors to the log
   at that snapshot: whatever changed since the plan began is read from the log, so nothing is
   lost, and no cursor moves backwards (a merge).

What runs the shards is the orchestrator's business (Dagster's executors in this project); this
module only makes any order and any concurrency of them correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Float, Table, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from etl_core.errors import ConfigError, EtlError
from etl_core.flow.pipeline import SyncResult, sync
from etl_core.logs import event
from etl_core.model.cursor import LogCursor, Position
from etl_core.model.protocols import CursorStore, DeadLetterStore, ShardPlanStore, Sink
from etl_core.model.records import Shard
from etl_core.model.snapshot import Snapshot
from etl_core.model.versions import IndexVersion
from etl_core.read.extract import Extractor

R = TypeVar("R")


class ShardsUnfinished(EtlError):
    """The hand-over was asked for before every shard had walked its range."""


@dataclass(frozen=True, slots=True)
class ShardPlan:
    snapshot: Snapshot
    shards: tuple[Shard, ...]

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": str(self.snapshot), "shards": [[s.after, s.until] for s in self.shards]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardPlan:
        """Also reads a plan the xmin-bounded reader recorded (``bound``)."""
        ranges = data["shards"]
        snapshot = (
            Snapshot.parse(data["snapshot"]) if "snapshot" in data else Snapshot.below(int(data["bound"]))
        )
        return cls(
            snapshot,
            tuple(Shard(i + 1, len(ranges), a, u, snapshot) for i, (a, u) in enumerate(ranges)),
        )


def lane_of(versions: Sequence[IndexVersion[Any]]) -> str:
    """The name a lane's shard plan is kept under: its versions' keys, sorted."""
    return ",".join(sorted(v.key for v in versions))


def plan_shards(
    versions: Sequence[IndexVersion[R]],
    k: int,
    *,
    extractor: Extractor[R],
    sink: Sink,
    plans: ShardPlanStore | None = None,
) -> ShardPlan:
    """The snapshot, the indices, and K key ranges of about equal size (fewer when the table has
    fewer distinct keys).

    With ``plans``, a lane's plan is recorded until its hand-over, and a later call for the same
    lane (a new run after a failed or abandoned one) resumes it as it was cut: the same snapshot,
    ranges and shard checkpoints, so finished shards are not walked again; ``k`` then does not
    apply. A recorded plan whose index had to be created again (someone dropped it) is thrown
    away: its finished shards' documents are gone with the index."""
    source = extractor.source
    if source.tracking is None:
        raise ConfigError(
            f"source {source.name!r}: a sharded backfill needs change capture (tracking=Tracking(...)) "
            "to hand over to the log at its snapshot"
        )
    if k < 1:
        raise ConfigError(f"a sharded backfill needs at least one shard, got {k}")
    created = sink.ensure_indices(versions)  # once, before any shard: they would race to create them
    lane = lane_of(versions)
    recorded = plans.get(lane) if plans is not None else None
    if recorded is not None and plans is not None:
        if not created:
            resumed = ShardPlan.from_json(recorded)
            event("shards_resumed", versions=lane, snapshot=str(resumed.snapshot), shards=len(resumed.shards))
            return resumed
        plans.drop(lane)
        event("shard_plan_dropped", versions=lane, reason=f"indices created again: {sorted(created)}")
    bound = extractor.watermark().below
    assert isinstance(bound, Snapshot)
    root: Table = source.tracking.root
    column = root.c[source.tracking.key]
    fractions = [i / k for i in range(1, k)]
    cuts: list[Any] = []
    if fractions:
        stmt = select(
            func.percentile_disc(literal(fractions, ARRAY(Float))).within_group(column)
        ).select_from(root)
        cuts = [c for c in (extractor.scalar("shard boundaries", stmt) or []) if c is not None]
    edges = sorted(set(cuts))
    ranges = list(zip([None, *edges], [*edges, None], strict=True))
    plan = ShardPlan(bound, tuple(Shard(i + 1, len(ranges), a, u, bound) for i, (a, u) in enumerate(ranges)))
    if plans is not None:  # two runs planning at once agree on the first plan recorded
        plan = ShardPlan.from_json(plans.claim(lane, plan.to_json()))
    event(
        "shards_planned",
        versions=[v.key for v in versions],
        snapshot=str(plan.snapshot),
        shards=len(plan.shards),
    )
    return plan


class ShardCursors:
    """A cursor store seen through one shard: the versions' keys map to the shard's own."""

    def __init__(self, inner: CursorStore, shard: Shard) -> None:
        self.inner, self.shard = inner, shard

    def load(self, versions: Any) -> dict[str, Position | None]:
        keys = list(versions)
        found = self.inner.load(self.shard.key(k) for k in keys)
        return {k: found.get(self.shard.key(k)) for k in keys}

    def save(self, cursors: Any) -> None:
        self.inner.save({self.shard.key(k): c for k, c in cursors.items()})


def sync_shard(
    versions: Sequence[IndexVersion[R]],
    shard: Shard,
    *,
    extractor: Extractor[R],
    sink: Sink,
    dead_letters: DeadLetterStore,
    cursors: CursorStore,
    max_pages: int | None = None,
    in_flight: int = 2,
) -> SyncResult:
    """Walk one shard's range (resuming from its own checkpoint). The caller holds the versions'
    lane lock shared (:meth:`etl_core.state.lanes.PostgresLaneLock.hold`)."""
    return sync(
        versions,
        extractor=extractor,
        sink=sink,
        dead_letters=dead_letters,
        cursors=ShardCursors(cursors, shard),
        max_pages=max_pages,
        in_flight=in_flight,
        exclusive=True,  # the other writers are the plan's other shards, on other keys
        shard=shard,
    )


def unfinished(versions: Sequence[IndexVersion[Any]], plan: ShardPlan, cursors: CursorStore) -> list[str]:
    """The shards (``"2/4"``) that have not walked their range yet, for any of the versions."""
    done = LogCursor.done(plan.snapshot)
    left = []
    for shard in plan.shards:
        found = ShardCursors(cursors, shard).load(v.key for v in versions)
        if any(c != done for c in found.values()):
            left.append(f"{shard.number}/{shard.count}")
    return left


def hand_over(
    versions: Sequence[IndexVersion[Any]],
    plan: ShardPlan,
    *,
    cursors: CursorStore,
    sink: Sink,
    plans: ShardPlanStore | None = None,
) -> LogCursor:
    """Every shard done: the versions follow the log from the plan's snapshot (their serving
    settings restored), and the lane's recorded plan is dropped. Refuses, naming the shards left,
    before that."""
    left = unfinished(versions, plan, cursors)
    if left:
        raise ShardsUnfinished(
            f"shards {left} of the backfill of {[v.key for v in versions]} have not finished; "
            "run them (a finished shard does nothing when run again), then hand over"
        )
    position = LogCursor.done(plan.snapshot)
    cursors.save({v.key: position for v in versions})  # a merge: never moves a version back
    sink.finish_backfill(versions)
    if plans is not None:
        plans.drop(lane_of(versions))
    event("shards_handed_over", versions=[v.key for v in versions], snapshot=str(plan.snapshot))
    return position
