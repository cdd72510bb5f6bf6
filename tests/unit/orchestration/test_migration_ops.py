"""The migration jobs (cut-over, retire, replay, reconcile) over the fake engine: what each refuses
(an unvalidated or failed version, a busy lane, a live or retired version), what it changes in the
fake world (the alias, the records, documents, letters) and what it reports to Dagster.

The lane-busy rule is the one ``tests/orchestration/test_lane_races.py`` proves against a real
command-line follower on PostgreSQL; here the other holder is the fake lane lock itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dagster import RunRequest

from orchestration.partitions import lane_tags
from tests.unit.fakes import at
from tests.unit.models import version
from tests.unit.orchestration.rig import ALIAS, Rig

BUSY = "is being synced by another process"


@pytest.fixture
def validated(rig: Rig) -> Rig:
    """v1 synced and validated: ready to cut over."""
    rig.sync("v1")
    assert all(e.passed for e in rig.validate("v1").values())
    return rig


def test_cut_over_refuses_an_unvalidated_version_and_moves_the_alias_once_validated(rig: Rig) -> None:
    rig.sync("v1")

    refused = rig.run_job("cut_over", version="v1")
    assert not refused.success
    assert "has never been validated" in rig.failure(refused)
    assert rig.world.sink.alias_targets(ALIAS) == []

    rig.validate("v1")
    assert rig.run_job("cut_over", version="v1").success
    assert rig.world.sink.alias_targets(ALIAS) == ["items_v1"]

    rig.sync("v2")
    rig.validate("v2")
    assert rig.run_job("cut_over", version="v2").success
    assert rig.world.sink.alias_targets(ALIAS) == ["items_v2"]  # one index behind the alias


def test_cut_over_refuses_a_version_whose_latest_validation_failed(validated: Rig) -> None:
    rig = validated
    held = rig.world.sink.docs["items_v1"]
    held.pop("4")
    rig.validate("v1")  # now fails: the latest outcome is the one that counts

    refused = rig.run_job("cut_over", version="v1")

    assert not refused.success
    assert "failed validation" in rig.failure(refused)
    assert "documents_match_transform" in rig.failure(refused)
    assert rig.world.sink.alias_targets(ALIAS) == []


@pytest.mark.parametrize(
    ("step", "config"),
    [
        ("cut_over", {"version": "v1"}),
        ("replay", {"versions": ["v1"]}),
        ("reconcile", {"versions": ["v1"]}),
    ],
)
def test_a_migration_step_fails_while_another_writer_holds_the_lane(
    validated: Rig, step: str, config: dict[str, object]
) -> None:
    rig = validated
    with rig.world.lanes.hold([version("v1")]):  # a follower on the command line, say
        refused = rig.run_job(step, **config)
        assert not refused.success
        assert BUSY in rig.failure(refused)
        assert rig.world.sink.alias_targets(ALIAS) == []

    assert rig.run_job(step, **config).success  # the lane is free again


def test_retire_records_the_retirement_and_the_planner_leaves_the_version_out(rig: Rig) -> None:
    rig.synced("v1")
    rig.serve("v1")
    assert [r.tags["etl/lane"] for r in rig.sensor_tick().run_requests or []] == ["v2"]

    before = datetime.now(UTC)
    assert rig.run_job("retire", version="v2", grace_hours=2.0).success

    retired = rig.world.records.retirements()
    assert list(retired) == ["v2"]
    assert rig.world.records.delete_after["v2"] >= before + timedelta(hours=2)
    tick = rig.sensor_tick()
    assert not tick.run_requests and tick.skip_message is not None
    refused = rig.run_job("replay", versions=["v2"])  # a retired version named is refused
    assert not refused.success and "v2 is retired" in rig.failure(refused)


def test_retire_refuses_the_version_behind_the_read_alias(validated: Rig) -> None:
    rig = validated
    assert rig.run_job("cut_over", version="v1").success

    refused = rig.run_job("retire", version="v1")

    assert not refused.success
    assert "is live behind alias" in rig.failure(refused)
    assert rig.world.records.retirements() == {}


def test_replay_reindexes_a_fixed_row_and_observes_the_outcome(rig: Rig) -> None:
    rig.world.table[1] = (2, None, 2, at(2), None)  # the transform refuses it: a dead letter
    rig.sync("v1")
    assert rig.world.letters.open_letters("v1") != []
    rig.world.table[1] = (2, "fixed", 2, at(2), None)  # fixed at the source

    assert rig.run_job("replay", versions=["v1"]).success

    assert rig.world.sink.document("items_v1", "2") == {"name": "fixed", "qty": 2}
    assert rig.world.letters.open_letters("v1") == []
    seen = rig.observation("v1")
    assert (seen["replay_resolved"], seen["replay_still_failing"], seen["replay_gone"]) == (1, 0, 0)


def test_reconcile_repairs_drift_and_observes_what_it_found(rig: Rig) -> None:
    rig.sync("v1")
    held = rig.world.sink.docs["items_v1"]
    held.pop("3")
    held["4"] = (held["4"][0], b'{"name":"edited by hand","qty":4}')

    assert rig.run_job("reconcile", versions=["v1"], repair=False).success
    seen = rig.observation("v1")
    assert (seen["reconcile_missing"], seen["reconcile_different"], seen["reconcile_repaired"]) == (1, 1, 0)
    assert "3" not in held  # only looked

    assert rig.run_job("reconcile", versions=["v1"]).success
    seen = rig.observation("v1")
    assert (seen["reconcile_missing"], seen["reconcile_different"], seen["reconcile_repaired"]) == (1, 1, 2)
    assert rig.world.sink.document("items_v1", "3") == {"name": "item 3", "qty": 3}
    assert rig.world.sink.document("items_v1", "4") == {"name": "item 4", "qty": 4}


def test_reconcile_deletes_the_index_of_a_version_retired_past_its_grace(rig: Rig) -> None:
    rig.sync("v1", "v2")
    assert rig.run_job("retire", version="v2", grace_hours=0.0).success

    assert rig.run_job("reconcile").success

    assert rig.world.sink.deleted_indices == ["items_v2"]
    assert "items_v2" not in rig.world.sink.docs
    assert rig.world.records.deleted == {"v2"}
    assert "items_v1" in rig.world.sink.docs  # a version not retired keeps its index


def test_a_cut_over_waits_for_the_writer_of_the_version_readers_leave(validated: Rig) -> None:
    """Readers move from v1 to v2: a sync still writing v1 must have ended (its lock is taken
    too), or a rollback to v1 would find it half-written."""
    rig = validated
    assert rig.run_job("cut_over", version="v1").success
    rig.sync("v2")
    rig.validate("v2")
    with rig.world.lanes.hold([version("v1")]):  # v1, the live one, is being written
        refused = rig.run_job("cut_over", version="v2")
        assert not refused.success and BUSY in rig.failure(refused)
        assert rig.world.sink.alias_targets(ALIAS) == ["items_v1"]
    assert rig.run_job("cut_over", version="v2").success


def test_a_run_queued_before_a_retirement_writes_nothing(rig: Rig) -> None:
    """The partition is left over and a run was queued before the retirement: under the lane
    lock the sync finds the version retired and refuses, so its index is not written again."""
    rig.sync("v1")
    written = dict(rig.world.sink.docs["items_v1"])
    rig.world.records.add_retirement(version("v1"), datetime.now(UTC))
    rig.world.table.append((99, "late", 1, at(9), None))
    request = RunRequest(tags=lane_tags("items", ["v1"]), run_config={"ops": {"items_index": {"config": {}}}})
    refused = rig.execute(request)
    assert not refused.success and "v1 is retired (since" in rig.failure(refused)
    assert rig.world.sink.docs["items_v1"] == written
