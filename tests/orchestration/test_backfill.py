"""A sharded backfill as one Dagster run on the multiprocess executor: one process per shard."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, execute_job, reconstructable
from sqlalchemy import text

from benchmarks.shards import CeleryWorkers
from catalogue.generate import generate
from catalogue.versions import V1, V3
from etl_core.model.cursor import LogCursor
from tests.integration.test_sync import assert_parity, execute
from tests.orchestration.backfill_job import catalogue_backfill, catalogue_backfill_celery
from tests.orchestration.conftest import Project


def test_a_sharded_backfill_runs_its_shards_as_steps_and_hands_over(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = project.harness
    generate(h.source_engine, rows=1800, seed=71)
    monkeypatch.setenv("BACKFILL_TEST_PREFIX", h.prefix)
    monkeypatch.setenv("BACKFILL_TEST_VERSIONS", "v1,v3")
    monkeypatch.setenv("BACKFILL_TEST_SOURCE_URL", h.source_engine.url.render_as_string(hide_password=False))
    v1, v3 = h.version(V1), h.version(V3)

    with (
        project.pinned(),
        execute_job(
            reconstructable(catalogue_backfill),
            instance=project.instance,
            run_config={
                "ops": {"catalogue_plan_shards": {"config": {"versions": ["v1", "v3"], "shards": 3}}}
            },
        ) as result,
    ):
        assert result.success
        steps = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}
        processes = {
            e.pid
            for e in result.all_events
            if e.event_type == DagsterEventType.STEP_START and e.pid is not None
        }
    assert steps == {
        "catalogue_plan_shards",
        "catalogue_walk_shard[shard1]",
        "catalogue_walk_shard[shard2]",
        "catalogue_walk_shard[shard3]",
        "catalogue_hand_over",
    }
    assert len(processes) == 5  # every step in a process of its own: the multiprocess executor
    assert assert_parity(h, v1, v3) > 0

    cursors = h.cursors.load(["v1", "v3"])
    assert all(isinstance(c, LogCursor) and not c.backfilling for c in cursors.values())
    recorded = (
        project.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("catalogue_index"), asset_partitions=["v1"]), limit=1
        )
        .records[0]
        .asset_materialization
    )
    assert recorded is not None and recorded.metadata["cursor"].value == cursors["v1"].to_json()  # type: ignore[union-attr]

    # the versions now follow the log: a change made after the backfill arrives with a plain sync
    with h.source_engine.begin() as conn:
        conn.execute(text("UPDATE products SET name = 'after the backfill' WHERE id = 42"))
    project.declare([v1, v3])
    project.instance.add_dynamic_partitions("catalogue_versions", ["v1", "v3"])
    assert project.sensor_tick().run_requests == []  # no catch-up lane: both are built
    (tick,) = project.schedule_tick()
    assert project.execute(tick).success
    assert project.metadata("v1")["rows_read"] == 1
    assert_parity(h, v1, v3)


@pytest.fixture
def celery_workers(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Two celery workers, one step at a time each, on the local Redis (scripts/services.sh).
    They rebuild the job from the environment, so it is set before they start."""
    h = project.harness
    monkeypatch.setenv("BACKFILL_TEST_PREFIX", h.prefix)
    monkeypatch.setenv("BACKFILL_TEST_VERSIONS", "v1")
    monkeypatch.setenv("BACKFILL_TEST_SOURCE_URL", h.source_engine.url.render_as_string(hide_password=False))
    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    with CeleryWorkers(broker, tmp_path) as workers:
        yield workers.config


def test_the_backfill_runs_its_shards_on_two_celery_workers(
    project: Project, celery_workers: dict[str, Any]
) -> None:
    h = project.harness
    generate(h.source_engine, rows=1200, seed=72)
    with (
        project.pinned(),
        execute_job(
            reconstructable(catalogue_backfill_celery),
            instance=project.instance,
            run_config={
                "execution": {"config": celery_workers},
                "ops": {"catalogue_plan_shards": {"config": {"versions": ["v1"], "shards": 4}}},
            },
        ) as result,
    ):
        assert result.success
        walkers = {
            e.pid
            for e in result.all_events
            if e.event_type == DagsterEventType.STEP_START
            and (e.step_key or "").startswith("catalogue_walk_shard")
        }
    assert len(walkers) >= 2  # the shards ran on both workers
    assert assert_parity(h, h.version(V1)) > 0


def test_the_planner_builds_a_never_synced_version_with_the_sharded_backfill(project: Project) -> None:
    """``backfill_shards`` ≥ 2: the planner's run for a new version is the backfill job (the
    lane's tags on it, so nothing else starts for the lane); afterwards the version is live and
    the schedule keeps it fresh. Without it the planner asks for paged catch-up runs."""
    h = project.harness
    generate(h.source_engine, rows=900, seed=72)
    v1 = h.version(V1)
    project.declare([v1], backfill_shards=3)
    [request] = project.sensor_tick().run_requests or []
    assert request.job_name == "catalogue_backfill"
    assert request.tags["etl/lane"] == "v1" and request.tags["etl/shards"] == "3"
    result = project.execute(request)
    assert result.success
    walked = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}
    assert {f"catalogue_walk_shard[shard{n}]" for n in (1, 2, 3)} <= walked
    assert assert_parity(h, v1) == 900
    assert project.metadata("v1")["shards"] == 3

    assert not project.sensor_tick().run_requests  # built: nothing left to catch up
    execute(h, "UPDATE products SET name = 'after the backfill' WHERE id = 5")
    [live] = project.schedule_tick()
    assert live.job_name is None and project.execute(live).success
    assert h.documents(v1)["5"]["name"] == "after the backfill"

    project.declare([v1, h.version(V3)])  # the default: no shards
    [paged] = project.sensor_tick().run_requests or []
    assert paged.job_name is None and paged.tags["etl/lane"] == "v3"
