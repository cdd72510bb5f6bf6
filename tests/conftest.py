"""Shared test setup: load the local services' settings when the environment has none."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from catalogue.generate import create_schema
from catalogue.source import CATALOGUE_BY_COLUMN
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import make_client
from tests.integration.harness import Harness

ROOT = Path(__file__).resolve().parent.parent


def _load_local_env() -> None:
    """``scripts/services.sh up`` writes .services/env; honour a user's own variables first."""
    env_file = ROOT / ".services" / "env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            os.environ.setdefault(name, shlex.split(value)[0] if value else "")


_load_local_env()


@pytest.fixture(scope="session")
def settings() -> Settings:
    if subprocess.run([ROOT / "scripts" / "services.sh", "status"], capture_output=True).returncode:
        subprocess.run([ROOT / "scripts" / "services.sh", "up"], check=True)
        _load_local_env()
    return Settings.from_env()


@pytest.fixture(scope="session")
def admin_engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.source_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@contextmanager
def fresh_database(admin_engine: Engine, prefix: str = "t") -> Iterator[str]:
    """A database of its own on the shared server, dropped (sessions and all) on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database(settings: Settings, admin_engine: Engine) -> Iterator[str]:
    with fresh_database(admin_engine) as name:
        yield name


@pytest.fixture
def by_column(harness: Harness) -> Harness:
    """The harness on change-column mode: a trustworthy ``updated_at`` stamped by triggers (the
    kind a user's table may already carry), read through ``CATALOGUE_BY_COLUMN``."""
    ddl = (ROOT / "tests" / "integration" / "change_column.sql").read_text()
    with harness.source_engine.begin() as conn:
        conn.exec_driver_sql(ddl)
    harness.source = CATALOGUE_BY_COLUMN
    return harness


@pytest.fixture
def harness(settings: Settings, database: str) -> Iterator[Harness]:
    url = settings.source_url.set(database=database)
    source_engine, state_engine = make_engine(url), make_engine(url)
    create_schema(source_engine)
    client = make_client(settings.opensearch_url)
    prefix = database.replace("_", "-")
    h = Harness(source_engine, state_engine, client, prefix)
    try:
        yield h
    finally:
        client.indices.delete(index=f"{prefix}_*", ignore_unavailable=True)
        client.close()
        source_engine.dispose()
        state_engine.dispose()
