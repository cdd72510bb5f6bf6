"""The two doors lock alike: a Dagster cut-over, replay or reconcile cannot run while a
command-line follower writes the same lane, and goes through once it has ended.

Before the operations were written once, the command line held the lane lock for these steps and
the Dagster ops did not: a cut-over could swap the alias while a shell's sync still wrote the old
index, and a replay's fresh document could be overwritten by that sync's older one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from catalogue.generate import generate
from catalogue.versions import VERSIONS
from etl_core.model.versions import with_prefix
from etl_core.state.lanes import LaneBusy
from tests.conftest import ROOT
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration
DEMO = ["--source", "catalogue.source:CATALOGUE", "--versions", "catalogue.versions:VERSIONS"]


def _shell(project: Project, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STATE_DATABASE_URL"}
    env["SOURCE_DATABASE_URL"] = project.harness.source_engine.url.render_as_string(hide_password=False)
    env["ETL_INDEX_PREFIX"] = prefix
    env["PYTHONPATH"] = str(ROOT)
    return env


def _cli(env: dict[str, str], *argv: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "etl_core", *DEMO, *argv], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def test_dagster_migration_steps_wait_for_a_command_line_follower_of_the_same_lane(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=300, seed=17)
    prefix = f"{h.prefix}_"
    versions = with_prefix(VERSIONS, prefix)
    project.declare(VERSIONS, index_prefix=prefix)  # the shell's names: both doors prefix alike
    env = _shell(project, prefix)
    assert _cli(env, "sync")["rows_read"] == 300
    assert _cli(env, "validate", "v1")["passed"] is True
    alias = f"{prefix}products"

    follower = subprocess.Popen(
        [sys.executable, "-m", "etl_core", *DEMO, "follow", "--seconds", "60"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the follower holds the lane (every declared version)
            assert follower.poll() is None, "the follower ended before it held the lane"
            assert time.monotonic() < deadline
            try:
                with h.lanes.hold([versions[0]]):
                    pass
            except LaneBusy:
                break
            time.sleep(0.05)

        for job, config in (
            ("catalogue_cut_over", {"version": "v1"}),
            ("catalogue_replay", {"versions": ["v1"]}),
            ("catalogue_reconcile", {"versions": ["v1"]}),
        ):
            refused = project.run_job(job, **config)
            assert not refused.success, job
            failure = refused.get_step_failure_events()[0].step_failure_data.error
            assert failure is not None and "is being synced by another process" in failure.message, job
        assert h.sink.alias_targets(alias) == []  # the alias did not move under the follower
    finally:
        follower.terminate()
        follower.wait(timeout=60)

    assert project.run_job("catalogue_cut_over", version="v1").success
    assert h.sink.alias_targets(alias) == [versions[0].index]
    assert project.run_job("catalogue_replay", versions=["v1"]).success
