"""Partitions without the daemon: with automation off, versions become partitions only when the
planner sensor ticks, so ``dagster asset materialize --partition-range`` failed with
``DagsterUnknownPartitionError``. The ``<source>_register_versions`` job registers them, from the
command line exactly as the README prints it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from catalogue.generate import generate
from catalogue.versions import VERSIONS
from etl_core.model.versions import with_prefix
from tests.conftest import ROOT
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity

pytestmark = pytest.mark.integration


def test_registered_versions_can_be_materialised_as_a_range_without_the_daemon(
    harness: Harness, dagster_instance: DagsterInstance
) -> None:
    h = harness
    generate(h.source_engine, rows=300, seed=23)
    prefix = f"{h.prefix}_"
    env = {k: v for k, v in os.environ.items() if k != "STATE_DATABASE_URL"}
    env |= {
        "SOURCE_DATABASE_URL": h.source_engine.url.render_as_string(hide_password=False),
        "ETL_INDEX_PREFIX": prefix,
        "ETL_AUTOMATION": "false",
        "PYTHONPATH": str(ROOT),
    }
    dagster = [sys.executable, "-m", "dagster"]
    materialize = [
        *dagster,
        "asset",
        "materialize",
        "-m",
        "orchestration.definitions",
        "--select",
        "catalogue_index",
        "--partition-range",
        "v1...v3",
    ]

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    before = run(materialize)
    assert before.returncode != 0 and "v1" in before.stdout + before.stderr  # no such partition yet

    registered = run(
        [*dagster, "job", "execute", "-m", "orchestration.definitions", "-j", "catalogue_register_versions"]
    )
    assert registered.returncode == 0, registered.stderr[-2000:]
    assert list(dagster_instance.get_dynamic_partitions("catalogue_versions")) == ["v1", "v2", "v3"]

    after = run(materialize)
    assert after.returncode == 0, after.stderr[-2000:]
    assert assert_parity(h, *with_prefix(VERSIONS, prefix)) > 0  # one range run built all three
