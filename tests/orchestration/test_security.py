"""Passwords never appear in logs, Dagster's event log, run metadata or exception text."""

from __future__ import annotations

import logging
import uuid

import pytest
from dagster import RunRequest
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import V1
from orchestration.partitions import lane_tags
from orchestration.resources import SyncServices
from tests.faults.proxy import FaultProxy
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def test_passwords_never_leak(
    project: Project, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    h = project.harness
    generate(h.source_engine, rows=200, seed=71)
    db_secret, os_secret = f"Db-{uuid.uuid4().hex}", f"Os-{uuid.uuid4().hex}"
    role = f"leak_{uuid.uuid4().hex[:8]}"
    with h.source_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{db_secret}'"))
    caplog.set_level(logging.DEBUG)
    url = h.source_engine.url.set(username=role, password=db_secret)
    try:
        with FaultProxy(project.engine.opensearch_url, user="etl", password=os_secret) as proxy:

            def engine(**overrides: str) -> SyncServices:
                fields = {
                    "source_database_url": url.render_as_string(hide_password=False),
                    "opensearch_url": proxy.url,
                    "opensearch_user": "etl",
                    "opensearch_password": os_secret,
                    "etl_page_size": "50",
                    **overrides,
                }
                return SyncServices(**fields)

            project.instance.add_dynamic_partitions("catalogue_versions", ["v1"])
            request = RunRequest(tags=lane_tags("catalogue", ["v1"]))
            runs = []
            for sync_services in (
                engine(),  # succeeds
                engine(opensearch_password="wrong-" + os_secret[::-1]),  # 401 from OpenSearch
                engine(source_database_url=url.set(port=1).render_as_string(hide_password=False)),
            ):
                project.engine = sync_services
                project.declare([h.version(V1)])
                assert project.defs is not None
                with project.pinned():
                    job = project.defs.resolve_job_def("catalogue_sync")
                runs.append(
                    job.execute_in_process(instance=project.instance, tags=request.tags, raise_on_error=False)
                )
            assert [r.success for r in runs] == [True, False, False]
    finally:
        with h.source_engine.begin() as conn:
            conn.execute(text(f"DROP ROLE {role}"))

    haystacks = [caplog.text, *capfd.readouterr()]
    for run in runs:
        for entry in project.instance.all_logs(run.run_id):
            haystacks.append(repr(entry))
        for failure in run.get_step_failure_events():
            haystacks.append(str(failure.step_failure_data.error))
    meta = project.metadata("v1")
    haystacks.append(repr(meta))
    assert meta["docs_indexed"] == 200
    assert any("refused the credentials" in hay for hay in haystacks)
    for secret in (db_secret, os_secret):
        leaks = [
            hay[max(0, hay.find(secret) - 200) : hay.find(secret) + 50] for hay in haystacks if secret in hay
        ]
        assert not leaks, leaks
