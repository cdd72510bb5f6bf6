"""``scripts/serve.sh`` serves a user's own code location without editing the project: a module
(or a workspace file) as its second argument or from the environment, as the systemd units pass it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
SERVE = str(ROOT / "scripts" / "serve.sh")

OWN_MODULE = """
from orchestration.project import build_definitions
from tests.orchestration.brands import B1, BRANDS

defs = build_definitions(BRANDS, [B1], automation=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _asset_keys(port: int) -> list[str]:
    body = orjson.dumps({"query": "{ assetNodes { assetKey { path } } }"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        nodes = orjson.loads(response.read())["data"]["assetNodes"]
    return sorted("/".join(n["assetKey"]["path"]) for n in nodes)


def test_the_webserver_serves_a_module_of_the_users_own(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "myproject"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # storage in DAGSTER_HOME
    (project / "myshop").mkdir(parents=True)
    (project / "myshop" / "__init__.py").write_text("")
    (project / "myshop" / "definitions.py").write_text(OWN_MODULE)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PORT": str(port), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [SERVE, "webserver", "myshop.definitions"],
        cwd=project,  # where the module is imported from, as a unit's WorkingDirectory
        env=env,
        start_new_session=True,
        stdout=(tmp_path / "webserver.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, keys = time.monotonic() + 120, list[str]()
        while time.monotonic() < deadline and not keys:
            assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                keys = _asset_keys(port)
            except OSError:
                time.sleep(0.5)
        assert keys == ["brands_index", "brands_source"]  # the user's location, not the project's
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_workspace_that_does_not_exist_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text("")
    done = subprocess.run(
        [SERVE, "daemon", "nowhere/workspace.yaml"],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        done.returncode == 2 and f"workspace {tmp_path}/nowhere/workspace.yaml does not exist" in done.stderr
    )
