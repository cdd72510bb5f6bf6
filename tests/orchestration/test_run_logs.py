"""The core's structured events reach a Dagster run's event log (``dagster.yaml``'s
``python_logs``): an on-call engineer reads ``sink_retry`` in the run, not in a process log."""

from __future__ import annotations

import pytest

from catalogue.generate import generate
from catalogue.versions import V1
from orchestration.partitions import lane_tags
from orchestration.resources import SyncServices
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def test_a_retry_of_the_core_shows_in_the_runs_events(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=50, seed=93)
    fields = project.engine.model_dump()
    fields["opensearch_url"] = "http://127.0.0.1:9"  # nothing listens there: every call is retried
    unreachable = Project(h, project.instance, SyncServices(**fields))
    unreachable.declare([h.version(V1)])
    unreachable.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
    assert unreachable.defs is not None
    with unreachable.pinned():
        job = unreachable.defs.resolve_job_def("catalogue_sync")
    result = job.execute_in_process(
        instance=unreachable.instance, tags=lane_tags("catalogue", ["v1"]), raise_on_error=False
    )
    assert not result.success
    messages = [e.user_message for e in unreachable.instance.all_logs(result.run_id)]
    retries = [m for m in messages if m.startswith("sink_retry ")]
    assert len(retries) >= 2, messages[-20:]  # each attempt, with what failed and the next wait
