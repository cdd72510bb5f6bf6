"""``python -m etl_core`` for any source: every command, its output, exit codes and errors.

The commands run in-process through ``main`` (the console entry point), with settings from the
environment exactly as a shell would give them; ``--help`` and a usage error run as a real
subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import VERSIONS
from etl_core.cli import main
from etl_core.model.versions import with_prefix
from tests.conftest import ROOT
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity

DEMO = ["--source", "catalogue.source:CATALOGUE", "--versions", "catalogue.versions:VERSIONS"]


@pytest.fixture
def cli(harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs one command on the harness database; returns (exit code, last stdout line as JSON or
    text, stderr). The index prefix is the harness's, so its clean-up removes what we wrote."""
    url = harness.source_engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("SOURCE_DATABASE_URL", url)
    monkeypatch.delenv("STATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ETL_INDEX_PREFIX", f"{harness.prefix}_")

    def run(*argv: str) -> tuple[int, Any, str]:
        code = main([*DEMO, *argv])
        out, err = capsys.readouterr()
        last = out.strip().splitlines()[-1] if out.strip() else ""
        try:
            return code, orjson.loads(last), err
        except orjson.JSONDecodeError:
            return code, last, err

    return run


def test_every_command_runs_a_migration_from_the_shell(harness: Harness, cli: Any) -> None:
    h = harness
    generate(h.source_engine, rows=400, seed=3)
    versions = with_prefix(VERSIONS, f"{h.prefix}_")
    alias = f"{h.prefix}_products"

    code, out, _ = cli("migrate")
    assert code == 0 and out["to_version"] >= out["from_version"] and out["schema"] == "etl_state"
    assert "@" not in out["database"] or ":***@" in out["database"]  # never the password
    code, out, _ = cli("sync")
    assert code == 0 and out["rows_read"] == 400
    in_stock = len(h.expected(versions[2]))
    assert {k: v["indexed"] for k, v in out["versions"].items()} == {"v1": 400, "v2": 400, "v3": in_stock}
    assert assert_parity(h, *versions) > 0

    code, status, _ = cli("status")
    assert code == 0 and status["alias"] == alias
    rows = {v["version"]: v for v in status["versions"]}
    assert {k: (r["lifecycle"], r["lag_rows"], r["dead_letters"]) for k, r in rows.items()} == {
        k: ("catching_up", 0, 0) for k in ("v1", "v2", "v3")
    }
    assert rows["v2"]["index"] == versions[1].index and ":" in rows["v2"]["cursor"]["snapshot"]
    assert status["open_transactions"] == []  # nothing holds an xid in the source database

    with h.source_engine.begin() as conn:  # a document behind the pipeline's back, then validate
        conn.execute(text("UPDATE products SET stock = stock + 1 WHERE id = 7"))
    code, report, _ = cli("validate", "v2")
    assert code == 1 and not report["passed"]  # the change is not synced yet: documents differ
    code, _, err = cli("cut-over", "v2")
    assert code == 1 and "v2" in err and h.sink.alias_targets(alias) == []
    code, _, err = cli("cut-over", "v3")  # never validated: the shell's word for what to do
    assert code == 1 and "`validate v3`" in err

    code, out, _ = cli("sync", "v2")  # one version alone
    assert code == 0 and set(out["versions"]) == {"v2"} and out["versions"]["v2"]["indexed"] == 1
    assert cli("validate", "v2")[0] == 0
    code, out, _ = cli("cut-over", "v2")
    assert code == 0 and out == {"alias": alias, "index": versions[1].index, "previous": []}
    assert h.sink.alias_targets(alias) == [versions[1].index]

    code, _, err = cli("retire", "v2")
    assert code == 1 and "live behind alias" in err
    assert cli("retire", "v1", "--grace-hours", "0")[0] == 0
    code, out, _ = cli("reconcile", "--report-only")  # every count that explains the totals
    assert code == 0 and out["deleted_indices"] == []
    assert {
        k: (v["documents"], v["source_rows"], v["dead_lettered"]) for k, v in out["versions"].items()
    } == {
        "v2": (400, 400, 0),
        "v3": (in_stock, in_stock, 0),
    }
    code, out, _ = cli("reconcile")
    assert code == 0 and out["deleted_indices"] == [versions[0].index]
    assert set(out["versions"]) == {"v2", "v3"}  # a retired version is no longer reconciled
    assert not h.client.indices.exists(index=versions[0].index)
    code, _, err = cli("sync", "v1")  # a retired version is refused at once, saying since when
    assert code == 1 and err.startswith("error: v1 is retired (since ") and "Not retired: ['v2', 'v3']" in err

    code, out, _ = cli("replay")
    assert code == 0 and set(out) == {"v2", "v3"}
    code, status, _ = cli("status")
    assert [(v["version"], v["lifecycle"]) for v in status["versions"]] == [
        ("v1", "retired"),
        ("v2", "live"),
        ("v3", "catching_up"),
    ]


def test_mistakes_exit_1_with_a_message_and_usage_errors_exit_2(
    harness: Harness, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli("cut-over", "v9")  # a version that does not exist is a usage error
    assert code == 2 and err.endswith(
        "error: versions ['v9'] are not declared; declared are ['v1', 'v2', 'v3']\n"
    )
    assert main(["--source", "catalogue.source:NOPE", "status"]) == 2
    assert (
        main(["--source", "catalogue.source:CATALOGUE", "--versions", "catalogue.source:CATALOGUE", "status"])
        == 2
    )
    assert main(["--source", "catalogue.source:CATALOGUE", "status"]) == 2  # no --versions
    assert "needs --versions" in capsys.readouterr().err
    assert main(["--source", "catalogue", "status"]) == 2  # not package.module:ATTR

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    usage = subprocess.run(
        [sys.executable, "-m", "etl_core", "--source", "x:Y", "teleport"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert usage.returncode == 2 and "invalid choice: 'teleport'" in usage.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "etl_core", "--help"], capture_output=True, text=True, env=env
    )
    assert helped.returncode == 0
    console = subprocess.run(
        [str(Path(sys.executable).with_name("pg-opensearch-sync")), "--source", "x:Y", "--version"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert console.returncode == 0 and console.stdout.startswith("pg-opensearch-sync 0.")
    for command in ("sync", "status", "validate", "cut-over", "retire", "replay", "reconcile", "tracking"):
        assert command in helped.stdout
