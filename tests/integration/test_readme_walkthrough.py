"""The README's "Your own source, end to end", run exactly as printed: its blocks are read from
README.md (each after a ``<!-- walkthrough: NAME -->`` marker), the files written, the SQL and the
commands run on a fresh database, so the walkthrough cannot drift from the code again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from etl_core.write.sink import make_client
from tests.conftest import ROOT
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration
BLOCK = re.compile(r"<!-- walkthrough: (?P<name>\S+) -->\n\s*```\w*\n(?P<body>.*?)\n\s*```", re.DOTALL)


def walkthrough() -> dict[str, str]:
    """Each marked block of the README, its indentation (a list item's) taken off."""
    found = {}
    for match in BLOCK.finditer((ROOT / "README.md").read_text()):
        lines = match["body"].splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        found[match["name"]] = "\n".join(line[indent:] for line in lines) + "\n"
    return found


def test_the_own_source_walkthrough_runs_as_printed(harness: Harness, tmp_path: Path) -> None:
    h = harness
    blocks = walkthrough()
    assert set(blocks) == {
        "schema.sql",
        "myshop/search.py",
        "commands",
        "myshop/definitions.py",
        "component:pyproject.toml",
        "component:myshop/definitions.py",
        "component:scaffold",
        "component:myshop/defs/orders/defs.yaml",
        "component:check",
    }
    with h.source_engine.begin() as conn:
        conn.exec_driver_sql(blocks["schema.sql"])
    (tmp_path / "myshop").mkdir()
    (tmp_path / "myshop" / "__init__.py").write_text("")
    for name in ("myshop/search.py", "myshop/definitions.py"):
        (tmp_path / name).write_text(blocks[name])

    prefix = f"{h.prefix}_"
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DATABASE_URL", "TRACKING_DATABASE_URL")}
    env |= {
        "SOURCE_DATABASE_URL": h.source_engine.url.render_as_string(hide_password=False),
        "ETL_INDEX_PREFIX": prefix,
        "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",  # .venv/bin, as an activated venv
        "PYTHONPATH": str(ROOT),  # the project itself, installed (the commands add $PWD for myshop)
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks["commands"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CREATE TABLE" in (tmp_path / "orders-tracking.sql").read_text()
    status = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert [(v["version"], v["lifecycle"], v["lag_rows"]) for v in status["versions"]] == [("v1", "live", 0)]

    client = make_client(os.environ["OPENSEARCH_URL"])
    try:
        assert list(client.indices.get_alias(name=f"{prefix}orders")) == [f"{prefix}orders_v1"]
        client.indices.refresh(index=f"{prefix}orders_v1")
        hits = client.search(index=f"{prefix}orders", body={"query": {"match_all": {}}})["hits"]["hits"]
        assert sorted((hit["_id"], hit["_source"]["customer"], hit["_source"]["total"]) for hit in hits) == [
            ("1", "ada", 12.5),
            ("2", "grace", 99.0),
        ]
    finally:
        client.indices.delete_alias(index=f"{prefix}orders_v1", name=f"{prefix}orders", ignore=[404])
        client.close()

    # the code location of step 3 loads as Dagster loads it
    loaded = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "myshop.definitions"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    with h.source_engine.connect() as conn:  # the change capture of step 2 is installed
        assert conn.execute(text("SELECT to_regclass('etl_state.orders_changes')")).scalar() is not None

    # step 3 the other way: the same source declared in a defs.yaml, scaffolded and checked by dg
    yaml_way = tmp_path / "yaml_way"
    (yaml_way / "myshop").mkdir(parents=True)
    (yaml_way / "myshop" / "__init__.py").write_text("")
    (yaml_way / "myshop" / "search.py").write_text(blocks["myshop/search.py"])
    for name in ("pyproject.toml", "myshop/definitions.py"):
        (yaml_way / name).write_text(blocks[f"component:{name}"])
    dg_env = {**env, "COLUMNS": "250"}  # dg list's table, not cut
    scaffolded = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks["component:scaffold"]],
        cwd=yaml_way,
        env=dg_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scaffolded.returncode == 0, scaffolded.stderr[-3000:]
    defs_yaml = yaml_way / "myshop" / "defs" / "orders" / "defs.yaml"
    assert "source: myshop.search:ORDERS" in defs_yaml.read_text()
    defs_yaml.write_text(blocks["component:myshop/defs/orders/defs.yaml"])
    checked = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"export PYTHONPATH=$PWD\n{blocks['component:check']}"],
        cwd=yaml_way,
        env=dg_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout
    assert "orders_index" in checked.stdout and "orders_freshness" in checked.stdout
