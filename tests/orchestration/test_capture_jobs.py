"""Change capture in Dagster: the ``change_tracking`` job, and follow mode in a long-lived run."""

from __future__ import annotations

import threading
import time

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

from catalogue.generate import generate
from catalogue.versions import V1
from etl_core.model.cursor import position_from_json
from etl_core.operations.lane_plan import Lane
from orchestration.naming import Names
from orchestration.planning import run_request
from tests.integration.test_sync import assert_parity, execute
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def test_the_change_tracking_job_plans_applies_and_removes(project: Project) -> None:
    project.declare([project.harness.version(V1)])
    plan = project.run_job("catalogue_change_tracking", action="plan")
    assert plan.success
    [materialised] = [
        e.step_output_data.metadata for e in plan.all_node_events if e.event_type_value == "STEP_OUTPUT"
    ]
    assert "CREATE OR REPLACE TRIGGER etl_track_catalogue_upd" in str(materialised["ddl"].value)
    for action, installed in (("status", True), ("remove", False), ("status", False), ("apply", True)):
        force = {"force": True} if action == "remove" else {}  # the demo data's entries go with it
        result = project.run_job("catalogue_change_tracking", action=action, **force)
        assert result.success
        [meta] = [
            e.step_output_data.metadata for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"
        ]
        assert meta["installed"].value is installed, action


def test_a_follow_run_keeps_the_live_lane_in_step_and_is_never_doubled(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=300, seed=81)
    v1 = h.version(V1)
    project.declare([v1])
    project.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
    assert project.execute(
        run_request(Names("catalogue"), Lane(("v1",), False), "test", 3)
    ).success  # the backfill

    follower = run_request(Names("catalogue"), Lane(("v1",), False), "test", 3, follow_s=6)
    # progress is recorded while the run follows (every 0.5 s here; 5 s by default), so the run's
    # history in the UI moves during its window, not only at its end
    follower.run_config["ops"]["catalogue_index"]["config"]["checkpoint_every_s"] = 0.5
    outcome: dict[str, bool] = {}
    runner = threading.Thread(target=lambda: outcome.update(ok=project.execute(follower).success))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        started = RunsFilter(statuses=[DagsterRunStatus.STARTED])
        while not project.instance.get_runs(filters=started, limit=1):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert project.schedule_tick() == []  # a lane with a run in flight gets no second one
        for product in range(10, 20):  # ten commits while the run follows the source
            execute(h, f"UPDATE products SET name = 'followed {product}' WHERE id = {product}")
            time.sleep(0.2)
    finally:
        runner.join()
    assert outcome == {"ok": True}
    meta = project.metadata("v1")
    assert meta["docs_indexed"] == 10 and meta["caught_up"] is True
    run_id = project.instance.get_runs(limit=1)[0].run_id
    observed = [
        e.asset_observation.metadata
        for e in project.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION)
        if e.asset_observation is not None
    ]
    positions = [position_from_json(dict(m["cursor"].value)) for m in observed if "checkpoint" in m]  # type: ignore[arg-type]
    assert len(positions) >= 2 and positions == sorted(positions) and positions[-1] > positions[0]
    assert {h.documents(v1)[str(p)]["name"] for p in range(10, 20)} == {
        f"followed {p}" for p in range(10, 20)
    }
    assert_parity(h, v1)
