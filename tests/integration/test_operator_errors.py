"""What an operator sees when a setting is wrong: one line that names the cause and the fix, the
exit code, no traceback, and nothing written. Through the command line, on the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

from catalogue.generate import generate
from tests.conftest import ROOT
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration
DEMO = ["--source", "catalogue.source:CATALOGUE", "--versions", "catalogue.versions:VERSIONS"]


def shell(h: Harness, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DATABASE_URL", "TRACKING_DATABASE_URL")}
    env |= {
        "SOURCE_DATABASE_URL": h.source_engine.url.render_as_string(hide_password=False),
        "ETL_INDEX_PREFIX": f"{h.prefix}_",
        "PYTHONPATH": str(ROOT),
    }
    return env | overrides


def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "etl_core", *DEMO, *argv], env=env, cwd=ROOT, capture_output=True, text=True
    )
    return done.returncode, done.stdout, done.stderr


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


def test_a_wrong_password_or_database_fails_at_once_naming_the_cause(harness: Harness) -> None:
    h = harness
    url = h.source_engine.url
    wrong_password = url.set(password="not-the-password").render_as_string(hide_password=False)
    code, out, err = cli(shell(h, SOURCE_DATABASE_URL=wrong_password), "sync")
    assert (code, out) == (1, "")
    assert last_line(err) == (
        "error: PostgreSQL refused the connection of SOURCE_DATABASE_URL: password authentication failed "
        f'for user "{url.username}". Check the user and password in SOURCE_DATABASE_URL; nothing was '
        "read or written"
    )
    assert "state_retry" not in err and "not-the-password" not in err  # not retried, never shown

    missing = url.set(database="no_such_database").render_as_string(hide_password=False)
    code, _, err = cli(shell(h, SOURCE_DATABASE_URL=missing), "status")
    assert code == 1
    assert last_line(err) == (
        'error: PostgreSQL refused the connection of SOURCE_DATABASE_URL: database "no_such_database" '
        "does not exist. Check the database name in SOURCE_DATABASE_URL, or create the database; "
        "nothing was read or written"
    )
    # the state's own variable is named when the state lives elsewhere
    code, _, err = cli(shell(h, STATE_DATABASE_URL=wrong_password), "status")
    assert code == 1 and "refused the connection of STATE_DATABASE_URL" in last_line(err)
    # nothing was written: no cursor, no index
    assert set(h.cursors.load(["v1", "v2", "v3"]).values()) == {None}
    assert h.client.indices.get(index=f"{h.prefix}_*") == {}


def test_an_unreachable_opensearch_ends_with_one_line_naming_the_call(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=50, seed=2)
    code, out, err = cli(shell(h, OPENSEARCH_URL="http://127.0.0.1:9"), "sync")
    assert (code, out) == (1, "")
    line = last_line(err)
    assert line.startswith(
        f"error: OpenSearch at http://127.0.0.1:9 could not be reached while checking whether index "
        f"{h.prefix}_products_v1 exists (6 attempts: connection refused)"
    ), line
    assert "urllib3" not in err and "WARNING" not in err  # the client's own noise stays quiet
    cursors: Any = cli(shell(h), "status")[1]
    assert all(v["cursor"] is None for v in orjson.loads(cursors)["versions"])  # no cursor moved


def test_a_retired_version_is_refused_at_once_by_every_command(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=50, seed=4)
    env = shell(h)
    assert cli(env, "sync")[0] == 0
    assert cli(env, "retire", "v1", "--grace-hours", "0")[0] == 0
    for argv in (
        ("sync", "v1"),
        ("validate", "v1"),
        ("cut-over", "v1"),
        ("replay", "v1"),
        ("reconcile", "v1"),
    ):
        code, out, err = cli(env, *argv)
        assert (code, out) == (1, ""), argv
        assert last_line(err).startswith("error: v1 is retired (since 20"), (argv, err[-500:])
        assert "Not retired: ['v2', 'v3']" in err
    code, out, _ = cli(env, "status")
    assert code == 0 and orjson.loads(out)["state"]["database"].endswith(f"/{h.source_engine.url.database}")
