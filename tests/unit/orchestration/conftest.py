"""Fixtures of the orchestration unit tests: a fake world with six rows, and the project over it
on an ephemeral Dagster instance. No PostgreSQL, no OpenSearch, no Dagster database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance

from etl_core.flow.collector import tune_for_syncs, tuned
from tests.unit.orchestration.fake_services import FakeServices, World, registered
from tests.unit.orchestration.rig import ROWS, Rig, build


@pytest.fixture(autouse=True)
def _collector_setting_restored() -> Iterator[None]:
    """Every Dagster run opts the process in to the collector's tuning (``SourceSpec.connect``):
    put the setting back, so the unit tests after these find the interpreter's own."""
    before = tuned()
    try:
        yield
    finally:
        tune_for_syncs(before)


@pytest.fixture
def world() -> World:
    return World(table=list(ROWS))


@contextmanager
def _rig(world: World, instance: DagsterInstance) -> Iterator[Rig]:
    with registered(world) as name, instance:
        services = FakeServices(world=name)
        yield Rig(world, instance, services, build(services))


@pytest.fixture
def rig(world: World) -> Iterator[Rig]:
    with _rig(world, DagsterInstance.ephemeral()) as made:
        yield made


@pytest.fixture
def scheduled_rig(world: World, tmp_path: Path) -> Iterator[Rig]:
    """On a SQLite instance in ``tmp_path``: a schedule's context opens its instance from a
    reference, which an ephemeral instance has not (still no service: a file)."""
    with _rig(world, DagsterInstance.local_temp(str(tmp_path))) as made:
        yield made
