"""The second example source's whole life, through Dagster, on the real services: registered
versions, a backfill of both in one range run, churn of every kind (hard and soft deletes, a user
renamed, tags linked and unlinked, comments that change an aggregate), exact parity, the
validation checks, the cut-over — served beside the catalogue in the default code location."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from dagster import RunRequest
from sqlalchemy import select

from etl_core.model.versions import IndexVersion, with_prefix
from etl_core.operations.lane_plan import CloseEnough
from forum.generate import churn, create_schema, generate
from forum.source import FORUM, Post, forum_select
from forum.versions import VERSIONS
from orchestration.partitions import lane_tags
from orchestration.project import build_definitions
from tests.orchestration.conftest import Project

pytestmark = pytest.mark.integration


def expected(project: Project, version: IndexVersion[Post]) -> dict[str, Any]:
    """The version's transform of every post that is not deleted, read in one plain query."""
    with project.harness.source_engine.connect() as conn:
        rows = conn.execute(select(forum_select.subquery())).all()
    posts = [Post(*row) for row in rows]
    return {str(p.id): orjson.loads(orjson.dumps(version.transform(p))) for p in posts if not p.is_deleted}


def test_the_forum_lives_its_whole_life_through_dagster(project: Project) -> None:
    h = project.harness
    create_schema(h.source_engine)
    generate(h.source_engine, posts=300, seed=5)
    prefix = f"{h.prefix}_"
    defs = build_definitions(
        FORUM,
        VERSIONS,
        sync_services=project.engine,
        index_prefix=prefix,
        close=CloseEnough(timedelta(seconds=60), rows=50),
        automation=False,
    )
    f1, f2 = with_prefix(VERSIONS, prefix)

    def run(name: str, **kw: Any) -> None:
        with project.pinned():
            job = defs.resolve_job_def(name)
        result = job.execute_in_process(instance=project.instance, **kw)
        assert result.success, name

    def parity() -> None:
        for version in (f1, f2):
            assert h.documents(version) == expected(project, version), version.key

    run("forum_register_versions")
    assert list(project.instance.get_dynamic_partitions("forum_versions")) == ["f1", "f2"]
    sync = RunRequest(tags=lane_tags("forum", ["f1", "f2"]))
    run("forum_sync", tags=sync.tags)  # both versions from one extraction
    parity()

    churn(h.source_engine, rounds=120, seed=9)
    run("forum_sync", tags=sync.tags)
    parity()  # hard deletes, flags, renames, tags and comment counts, without a reconcile

    run("forum_validate", tags={"dagster/partition": "f2"})
    run("forum_cut_over", run_config={"ops": {"forum_swap_read_alias": {"config": {"version": "f2"}}}})
    assert h.sink.alias_targets(f"{prefix}posts") == [f2.index]


def test_the_default_code_location_serves_the_forum_beside_the_catalogue() -> None:
    from orchestration.definitions import defs

    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {
        f"{source}_{sensor}"
        for source in ("catalogue", "forum")
        for sensor in ("migration_planner", "validate_caught_up")
    }
    keys = {"/".join(k.path) for k in repo.asset_graph.get_all_asset_keys()}
    assert {"catalogue_index", "forum_index", "forum_source"} <= keys
