"""Scheduled materialisation and backfilling a new version partition, on Dagster's PG storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
from dagster import DagsterRunStatus, RunRequest
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import V1, V2, V3
from etl_core.model.cursor import LogCursor, position_from_json
from orchestration.partitions import lane_tags
from tests.conftest import ROOT
from tests.integration.test_sync import assert_parity
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def change(project: Project, sql: str) -> None:
    with project.harness.source_engine.begin() as conn:
        conn.execute(text(sql))


def drain_catch_up(project: Project, limit: int = 30) -> int:
    """Tick the sensor and run what it asks for until no catch-up lane is left."""
    runs = 0
    for _ in range(limit):
        result = project.sensor_tick()
        requests = result.run_requests or []
        if not requests:
            return runs
        for request in requests:
            assert project.execute(request).success
            runs += 1
    raise AssertionError("catch-up did not finish")


def test_a_schedule_tick_advances_every_live_version_with_one_extraction(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=450, seed=11)
    v1, v2 = h.version(V1), h.version(V2)
    project.declare([v1, v2])
    assert drain_catch_up(project) >= 1
    for request in project.schedule_tick():  # close enough now: the live lane finishes the rest
        assert project.execute(request).success
    assert project.metadata("v1")["lag_rows"] == 0
    before = {k: project.metadata(k)["cursor"] for k in ("v1", "v2")}

    change(project, "UPDATE products SET price_cents = price_cents + 5 WHERE id % 7 = 0")
    requests = project.schedule_tick()
    assert len(requests) == 1, "both live versions share one lane"
    assert (
        requests[0].tags["dagster/asset_partition_range_start"],
        requests[0].tags["dagster/asset_partition_range_end"],
    ) == ("v1", "v2")
    result = project.execute(requests[0])
    assert result.success

    after = {k: project.metadata(k) for k in ("v1", "v2")}
    for k in ("v1", "v2"):
        assert position_from_json(after[k]["cursor"]) > position_from_json(before[k])
        assert after[k]["docs_indexed"] == 450 // 7 + 0  # ids 7, 14, ... 448
        assert after[k]["lag_rows"] == 0 and after[k]["caught_up"] is True
    # one extraction for both: the same run, the same pages and statements recorded on both
    assert after["v1"]["rows_read"] == after["v2"]["rows_read"] == 450 // 7
    # the bound, one statement per page of the log, and the empty probe after a full last page
    assert after["v1"]["statements"] == after["v2"]["statements"]
    assert after["v1"]["statements"] - 1 - after["v1"]["pages"] in (0, 1)
    runs = project.instance.get_runs()
    assert runs[0].tags["etl/lane"] == "v1-v2"
    assert_parity(h, v1, v2)


def test_declaring_v3_adds_its_partition_and_backfills_it_while_v1_v2_keep_syncing(
    project: Project,
) -> None:
    h = project.harness
    generate(h.source_engine, rows=1200, seed=12)
    v1, v2, v3 = h.version(V1), h.version(V2), h.version(V3)
    project.declare([v1, v2])
    drain_catch_up(project)
    assert project.instance.get_dynamic_partitions("catalogue_versions") == ["v1", "v2"]

    project.declare([v1, v2, v3])  # a deploy that declares v3
    first = project.sensor_tick()
    assert first.run_requests is not None
    assert project.instance.get_dynamic_partitions("catalogue_versions") == ["v1", "v2", "v3"]
    assert [r.tags["etl/lane"] for r in first.run_requests] == ["v3"]
    assert first.run_requests[0].run_config["ops"]["catalogue_index"]["config"]["max_pages"] == 3

    # interleave: catch-up chunks for v3 (sensor and schedule), live changes synced in between
    chunks, requests, merged = 0, list(first.run_requests), False
    for step in range(1, 20):
        for request in requests:
            assert project.execute(request).success
            chunks += request.tags["etl/lane"] == "v3"
        change(project, f"UPDATE products SET stock = stock + 1 WHERE id = {step * 13}")
        live = project.schedule_tick()
        lanes = [r.tags["etl/lane"] for r in live]
        merged = lanes == ["v1-v2-v3"]
        assert merged or lanes[0] == "v1-v2"
        for request in live:
            assert project.execute(request).success
            chunks += request.tags["etl/lane"] == "v3"
        assert project.metadata("v1")["lag_rows"] == 0  # the live lane stays fresh throughout
        if merged:
            break
        tick = project.sensor_tick()
        requests = list(tick.run_requests or [])
    assert merged
    # 1200 rows at 3 pages of 100 a chunk; the hand-over to the log is a page of its own, and a
    # backfilling version joins the live lane only once it follows the log
    assert 4 <= chunks <= 5
    assert project.metadata("v3")["caught_up"] is True

    # merged: the next tick syncs all three in one lane
    change(project, "UPDATE products SET stock = 0 WHERE id = 5")
    together = project.schedule_tick()
    assert [r.tags["etl/lane"] for r in together] == ["v1-v2-v3"]
    assert project.execute(together[0]).success
    assert_parity(h, v1, v2, v3)
    statuses = {r.status for r in project.instance.get_runs()}
    assert statuses == {DagsterRunStatus.SUCCESS}


def test_a_killed_run_resumes_from_its_checkpoint_not_from_zero(project: Project) -> None:
    """kill -9 mid-backfill: no materialisation, but checkpoints; the next run starts there."""
    h = project.harness
    rows = 15_000  # long enough that the kill always lands mid-run
    generate(h.source_engine, rows=rows, seed=13)
    v1 = h.version(V1)
    project.declare([v1])
    project.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
    args = {
        "prefix": h.prefix,
        "versions": ["v1"],
        "source_url": project.engine.source_database_url,
        "opensearch_url": project.engine.opensearch_url,
        "tags": lane_tags("catalogue", ["v1"]),
        "run_config": {"ops": {"catalogue_index": {"config": {"checkpoint_every_s": 0}}}},
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.orchestration.run_job", orjson.dumps(args).decode()],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120

    def backfilled() -> int:
        """The last key the backfill of v1 checkpointed (its cursor is ``backfill(key, snapshot)``), as
        the next run reads it: the state table, which every acknowledged page updates."""
        cursor = h.cursors.load(["v1"])["v1"]
        assert cursor is None or isinstance(cursor, LogCursor)
        return 0 if cursor is None else int(cursor.key or 0) if cursor.backfilling else rows

    while backfilled() < 500:  # a few pages in
        assert child.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    checkpoint = backfilled()
    assert 500 <= checkpoint < rows
    with pytest.raises(AssertionError, match="no materialisation"):
        project.metadata("v1")  # the killed run recorded none

    resume = project.execute(RunRequest(tags=lane_tags("catalogue", ["v1"])))
    assert resume.success
    meta = project.metadata("v1")
    redone = meta["rows_read"] - (rows - checkpoint)
    assert 0 <= redone <= 100  # at most the page in flight when the run was killed
    print(f"kill -9 after {checkpoint} rows checkpointed: {redone // 100} pages redone")
    # through the source, to the log: a snapshot position, past any backfill
    assert "snapshot" in meta["cursor"] and "backfill_key" not in meta["cursor"] and meta["caught_up"] is True
    assert_parity(h, v1)
