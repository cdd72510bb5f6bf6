"""A sharded backfill: K key ranges walked at once below one bound, then one hand-over to the log.

Nothing is lost (changes committed while the shards run arrive through the log), nothing is read
twice (a killed shard resumes from its checkpoint, a finished one does nothing), and no other
writer of the versions runs meanwhile.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import V1, V3
from etl_core.flow.pipeline import SyncResult
from etl_core.flow.shards import ShardsUnfinished, hand_over, plan_shards, sync_shard
from etl_core.model.cursor import LogCursor
from etl_core.model.records import Shard
from etl_core.state.lanes import LaneBusy
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity


def rows_in(h: Harness, shard: Shard) -> int:
    where = ["true"]
    if shard.after is not None:
        where.append(f"id > {int(shard.after)}")
    if shard.until is not None:
        where.append(f"id <= {int(shard.until)}")
    with h.source_engine.connect() as conn:
        return int(
            conn.execute(text(f"SELECT count(*) FROM products WHERE {' AND '.join(where)}")).scalar_one()
        )


def run_shard(h: Harness, versions: list[Any], shard: Shard, **kw: Any) -> SyncResult:
    with h.lanes.hold(versions, shared=True):
        return sync_shard(
            versions,
            shard,
            extractor=h.extractor(),
            sink=h.sink,
            dead_letters=h.dead_letters,
            cursors=h.cursors,
            **kw,
        )


def test_shards_run_at_once_resume_and_hand_over_without_loss(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=2400, seed=61)
    versions = [h.version(V1), h.version(V3)]
    plan = plan_shards(versions, 4, extractor=h.extractor(), sink=h.sink)
    shards = plan.shards
    assert len(shards) == 4 and shards[0].after is None and shards[-1].until is None
    assert all(a.until == b.after for a, b in pairwise(shards))
    assert min(rows_in(h, s) for s in shards) >= 500  # about equal: cut at the key quantiles

    # changes committed after the plan's bound, in every shard's range: the log brings them
    with h.source_engine.begin() as conn:
        conn.execute(text("UPDATE products SET name = 'renamed ' || id WHERE id IN (5, 900, 1700, 2390)"))
        conn.execute(text("DELETE FROM products WHERE id IN (11, 1201)"))
        conn.execute(text("UPDATE brands SET name = name || ' (new)' WHERE id = 1"))
    sizes = [rows_in(h, s) for s in shards]  # what each shard's walk will see
    assert sum(sizes) == 2398

    with pytest.raises(ShardsUnfinished, match=r"shards \['1/4', '2/4', '3/4', '4/4'\]"):
        hand_over(versions, plan, cursors=h.cursors, sink=h.sink)

    killed = run_shard(h, versions, shards[1], max_pages=2)  # a shard killed after two pages
    assert killed.rows_read == 2 * h.page_size and not killed.caught_up

    results: dict[int, SyncResult] = {}

    def shard_worker(shard: Shard) -> None:
        results[shard.number] = run_shard(h, versions, shard)

    with h.lanes.hold(versions, shared=True):  # while shards run, no other writer gets in
        with pytest.raises(LaneBusy):
            h.sync(versions)
        workers = [threading.Thread(target=shard_worker, args=(s,)) for s in shards]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert sorted(results) == [1, 2, 3, 4]
    # every row read once: the killed shard resumed after its last page, not from its start
    assert [results[s.number].rows_read for s in shards] == [
        sizes[0],
        sizes[1] - 2 * h.page_size,
        sizes[2],
        sizes[3],
    ]

    assert run_shard(h, versions, shards[2]).rows_read == 0  # a finished shard does nothing
    position = hand_over(versions, plan, cursors=h.cursors, sink=h.sink)
    assert position == LogCursor.done(plan.snapshot)
    assert h.cursors.load(v.key for v in versions) == {v.key: position for v in versions}

    caught = h.sync(versions)  # the log from the bound: the changes made during the backfill
    assert caught.rows_read >= 4 and all(t.cursor > position for t in caught.versions.values())
    assert assert_parity(h, *versions) > 0


def test_a_new_run_resumes_the_unfinished_plan_of_its_lane_instead_of_walking_again(
    harness: Harness,
) -> None:
    """A run that planned, walked one shard and died: the next plan of the same lane is the same
    plan (bound, ranges, checkpoints), whatever K it asks for, so the finished shard reads
    nothing; the hand-over drops the record. A recorded plan whose index is gone is not resumed."""
    h = harness
    generate(h.source_engine, rows=1500, seed=62)
    versions = [h.version(V1), h.version(V3)]
    first = plan_shards(versions, 3, extractor=h.extractor(), sink=h.sink, plans=h.shard_plans)
    assert run_shard(h, versions, first.shards[0]).rows_read == rows_in(h, first.shards[0])
    with h.source_engine.begin() as conn:  # after the bound: the log brings it at the hand-over
        conn.execute(text("UPDATE products SET name = 'while abandoned' WHERE id = 3"))

    again = plan_shards(versions, 5, extractor=h.extractor(), sink=h.sink, plans=h.shard_plans)
    assert again == first  # resumed as it was cut: K=5 does not apply
    assert run_shard(h, versions, again.shards[0]).rows_read == 0  # finished: not walked again
    for shard in again.shards[1:]:
        assert run_shard(h, versions, shard).rows_read == rows_in(h, shard)
    with h.lanes.hold(versions):
        hand_over(versions, again, cursors=h.cursors, sink=h.sink, plans=h.shard_plans)
    assert h.shard_plans.get("v1,v3") is None
    h.sync(versions)  # the log from the plan's bound: the change made while it was abandoned
    assert h.documents(versions[0])["3"]["name"] == "while abandoned"
    assert_parity(h, *versions)

    # a plan recorded, then its index dropped (a rebuild): a new plan, not the stale one
    rebuilt = [h.version(V1, "rebuilt")]
    stale = plan_shards(rebuilt, 2, extractor=h.extractor(), sink=h.sink, plans=h.shard_plans)
    run_shard(h, rebuilt, stale.shards[0])
    h.sink.delete_index(rebuilt[0].index)
    fresh = plan_shards(rebuilt, 2, extractor=h.extractor(), sink=h.sink, plans=h.shard_plans)
    assert fresh.snapshot.rank > stale.snapshot.rank
    for shard in fresh.shards:
        run_shard(h, rebuilt, shard)
    with h.lanes.hold(rebuilt):
        hand_over(rebuilt, fresh, cursors=h.cursors, sink=h.sink, plans=h.shard_plans)
    assert_parity(h, *rebuilt)
