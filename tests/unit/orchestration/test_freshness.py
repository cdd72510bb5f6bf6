"""The index asset's freshness, judged on the real lag (``orchestration.freshness``): the policy
the UI shows, the state recorded after a sync and after an observation of the source, and which
versions count. The fake world's rows carry their commit time, so an age is a row's distance
from the version's cursor."""

from __future__ import annotations

from datetime import timedelta

from dagster import DagsterEventType, EventRecordsFilter, FreshnessPolicy
from dagster._core.definitions.freshness import FreshnessState

from orchestration.freshness import counted, judge
from tests.unit.fakes import at
from tests.unit.orchestration.rig import INDEX, Rig

POLICY = FreshnessPolicy.time_window(fail_window=timedelta(seconds=1800), warn_window=timedelta(seconds=300))
"""The defaults: ETL_FRESHNESS_WARN_S=300, ETL_FRESHNESS_FAIL_S=1800."""


def state(rig: Rig) -> FreshnessState | None:
    record = rig.instance.get_freshness_state_records([INDEX]).get(INDEX)
    return None if record is None else record.freshness_state


def observe(rig: Rig) -> dict[str, object]:
    result = rig.defs.resolve_job_def("items_observe").execute_in_process(instance=rig.instance)
    assert result.success
    (event,) = result.get_asset_observation_events()
    return {k: v.value for k, v in event.asset_observation_data.asset_observation.metadata.items()}


def commit(rig: Rig, key: int, seconds: float) -> None:
    """A row committed ``seconds`` after the first one."""
    rig.world.table.append((key, f"item {key}", key, at(seconds), None))


def test_the_index_asset_declares_its_windows_from_the_settings(rig: Rig) -> None:
    node = rig.defs.resolve_asset_graph().get(INDEX)
    assert node.freshness_policy == POLICY


def test_a_lagging_version_turns_the_index_yellow_then_red_and_a_sync_turns_it_green(rig: Rig) -> None:
    rig.sync("v1")
    rig.serve("v1")
    assert state(rig) == FreshnessState.PASS  # judged at the end of the sync

    commit(rig, 7, 6 + 400)  # a change 400 s newer than what v1 has read, not applied
    shown = observe(rig)
    assert state(rig) == FreshnessState.WARN
    assert shown["index_freshness"] == "freshness WARN: oldest unapplied change 400 s (versions ['v1'])"

    commit(rig, 8, 6 + 2000)
    observe(rig)
    assert state(rig) == FreshnessState.FAIL

    rig.sync("v1")
    assert state(rig) == FreshnessState.PASS


def test_a_version_being_built_for_a_migration_does_not_turn_the_index_red(rig: Rig) -> None:
    rig.sync("v1")
    rig.serve("v1")
    rig.add_partitions("v2")  # declared, never synced: infinitely behind

    observe(rig)

    assert state(rig) == FreshnessState.PASS


def test_a_state_is_recorded_only_when_it_changes(rig: Rig) -> None:
    rig.sync("v1")
    observe(rig)
    observe(rig)
    records = rig.instance.get_freshness_state_records([INDEX])
    assert records[INDEX].freshness_state == FreshnessState.PASS
    changes = rig.instance.event_log_storage.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.FRESHNESS_STATE_CHANGE), limit=10
    )
    assert len(changes) == 1  # a sync and two observations, one state


def test_which_versions_count() -> None:
    keys = ["v1", "v2", "v3"]
    assert counted(keys, served={"v1"}, validated={"v2"}, synced={"v1", "v2", "v3"}) == ["v1", "v2"]
    assert counted(keys, served=set(), validated=set(), synced={"v1"}) == ["v1"]  # a first deployment
    assert counted(keys, served=set(), validated=set(), synced=set()) == []


def test_the_windows() -> None:
    assert judge({"v1": 299.0}, ["v1"], POLICY).state == FreshnessState.PASS
    assert judge({"v1": 300.0}, ["v1"], POLICY).state == FreshnessState.WARN
    assert judge({"v1": 1800.0}, ["v1"], POLICY).state == FreshnessState.FAIL
    assert judge({"v1": float("inf")}, ["v1"], POLICY).state == FreshnessState.FAIL  # never caught up
    assert judge({"v1": 10.0, "v2": 400.0}, ["v1", "v2"], POLICY).state == FreshnessState.WARN  # the worst
    assert judge({}, [], POLICY).state == FreshnessState.UNKNOWN
