"""The catalogue's backfill job, reconstructable from the environment: the multiprocess executor
starts each shard in a process of its own, which imports this module and calls the function."""

from __future__ import annotations

import dataclasses
import os

from dagster import ExecutorDefinition, JobDefinition

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from orchestration.project import build_definitions
from orchestration.resources import SyncServices


def catalogue_backfill() -> JobDefinition:
    return _job(None)


def catalogue_backfill_celery() -> JobDefinition:
    """The same job with its steps sent to celery workers (``dagster-celery``, Redis as broker);
    a pointer of its own, since Dagster caches what one pointer loads."""
    from dagster_celery import celery_executor

    return _job(celery_executor)


def _job(executor: ExecutorDefinition | None) -> JobDefinition:
    prefix = os.environ["BACKFILL_TEST_PREFIX"]
    wanted = os.environ["BACKFILL_TEST_VERSIONS"].split(",")
    versions = [
        dataclasses.replace(v, index=f"{prefix}_{v.key}_{v.index}") for v in VERSIONS if v.key in wanted
    ]
    engine = SyncServices(
        source_database_url=os.environ["BACKFILL_TEST_SOURCE_URL"],
        opensearch_url=os.environ["OPENSEARCH_URL"],
        etl_page_size="100",
    )
    defs = build_definitions(
        CATALOGUE, versions, sync_services=engine, automation=False, backfill_executor=executor
    )
    return defs.resolve_job_def("catalogue_backfill")
