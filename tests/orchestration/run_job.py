"""Run the sync job in a separate process, so a test can kill it with SIGKILL.

    python -m tests.orchestration.run_job '{"prefix": ..., "source_url": ..., "versions": [...],
                                            "tags": {...}, "run_config": {...}}'

The instance comes from DAGSTER_HOME; versions are the demo ones under the test's index prefix.
"""

from __future__ import annotations

import dataclasses
import sys

import orjson
from dagster import DagsterInstance

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from orchestration.project import build_definitions
from orchestration.resources import SyncServices


def main() -> None:
    args = orjson.loads(sys.argv[1])
    prefix = args["prefix"]
    versions = [
        dataclasses.replace(v, index=f"{prefix}_{v.key}_{v.index}")
        for v in VERSIONS
        if v.key in args["versions"]
    ]
    engine = SyncServices(
        source_database_url=args["source_url"], opensearch_url=args["opensearch_url"], etl_page_size="100"
    )
    defs = build_definitions(CATALOGUE, versions, sync_services=engine)
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("catalogue_sync").execute_in_process(
            instance=instance, tags=args["tags"], run_config=args["run_config"]
        )
    sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
