"""The webserver and the daemon, started as the services run them (`scripts/serve.sh`), on the
project's workspace with its own Dagster and catalogue databases."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from dagster._core.instance import DagsterInstance
from dagster._core.storage.defs_state.base import set_defs_state_storage
from sqlalchemy import Engine, text

from catalogue.generate import create_schema, generate
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import make_client
from forum.generate import create_schema as create_forum
from forum.generate import generate as generate_forum
from tests.conftest import ROOT

PORT = 3355


@dataclass
class DagsterDev:
    env: dict[str, str]
    source: Engine
    home: Path
    instance: DagsterInstance
    prefix: str
    url: str = f"http://127.0.0.1:{PORT}"
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Path = field(default_factory=lambda: Path("/dev/null"))

    def start(self) -> float:
        """Start the webserver and the daemon as the services do (``scripts/serve.sh``, what the
        systemd units run); return the seconds until the code location answered."""
        began = time.monotonic()
        self.processes = [
            subprocess.Popen(
                [str(ROOT / "scripts" / "serve.sh"), role],
                cwd=ROOT,
                env={**self.env, "HOST": "127.0.0.1", "PORT": str(PORT)},
                start_new_session=True,
                stdout=self.log.open("ab"),
                stderr=subprocess.STDOUT,
            )
            for role in ("webserver", "daemon")
        ]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.poll() is None, f"{process.args!r} exited; see {self.log}"
            try:
                data = self.graphql('{ assetOrError(assetKey: {path: ["catalogue_index"]}) { __typename } }')
                if data["assetOrError"]["__typename"] == "Asset":
                    return time.monotonic() - began
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the webserver did not come up; see {self.log}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = orjson.dumps({"query": query, "variables": variables or {}})
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = orjson.loads(response.read())
        assert "errors" not in payload, payload.get("errors")
        return payload["data"]  # type: ignore[no-any-return]

    def wait_for_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run.status.value
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish")


@pytest.fixture(scope="module")
def dagster_dev(
    settings: Settings,
    admin_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DagsterDev]:
    suffix = uuid.uuid4().hex[:10]
    source_db, dagster_db, prefix = f"t_{suffix}", f"d_{suffix}", f"ui-{suffix}-"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{source_db}"'))
        conn.execute(text(f'CREATE DATABASE "{dagster_db}"'))
    source_url = settings.source_url.set(database=source_db)
    engine = make_engine(source_url)
    create_schema(engine)
    generate(engine, rows=15_000, seed=21)
    create_forum(engine)  # the default code location serves the forum too
    generate_forum(engine, posts=200)

    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_DB": dagster_db,
        "SOURCE_DATABASE_URL": source_url.render_as_string(hide_password=False),
        "STATE_DATABASE_URL": source_url.render_as_string(hide_password=False),
        "ETL_INDEX_PREFIX": prefix,
        "ETL_AUTOMATION": "off",
        "ETL_PAGE_SIZE": "100",
        # a change left waiting a minute (Dagster's shortest window) turns the index yellow
        "ETL_FRESHNESS_WARN_S": "60",
        "ETL_FRESHNESS_FAIL_S": "3600",
    }
    saved = dict(os.environ)
    os.environ.update({"DAGSTER_HOME": str(home), "DAGSTER_PG_DB": dagster_db})
    instance = DagsterInstance.from_config(str(home))
    dev = DagsterDev(env, engine, home, instance, prefix, log=home / "dagster-dev.log")
    try:
        with set_defs_state_storage(instance.defs_state_storage):
            instance.add_dynamic_partitions("catalogue_versions", ["v1", "v2"])
            dev.start()
            yield dev
    finally:
        dev.stop()
        engine.dispose()
        instance.dispose()
        os.environ.clear()
        os.environ.update(saved)
        client = make_client(settings.opensearch_url)
        client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
        client.close()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dagster_db}" WITH (FORCE)'))
