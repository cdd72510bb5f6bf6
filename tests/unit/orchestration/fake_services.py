"""A fake engine for the Dagster layer: :class:`FakeServices` is the ``SyncServices`` resource
whose connections are in-memory fakes, so the orchestration's logic runs in seconds without
PostgreSQL or OpenSearch (``tests/orchestration`` still proves it on the real services).

Dagster rebuilds a ``ConfigurableResource`` from its config inside a run, so the fake cannot carry
its state itself: it names a :class:`World` (a config string), and every ``connect`` of every
copy of it reaches the same world, which the tests then read back (documents, aliases, cursors,
dead letters, validations, retirements, lane holds).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import make_url

from etl_core.model.source import Source
from etl_core.operations.connect import Connections
from etl_core.operations.lifecycle import MigrationRecords
from etl_core.read.extract import Extractor
from etl_core.settings import Settings
from etl_core.state.lanes import PostgresLaneLock
from etl_core.state.stores import PostgresCursorStore, PostgresDeadLetterStore, StateSchema
from etl_core.write.sink import OpenSearchSink
from orchestration.resources import SyncServices
from tests.unit.fakes import (
    MemoryCursorStore,
    MemoryIndex,
    MemoryLaneLock,
    MemoryLetterStore,
    MemoryRecords,
    TableExtractor,
)

R = TypeVar("R")

NOWHERE = make_url("postgresql+psycopg://fake@nowhere.invalid/none")
SETTINGS = Settings(source_url=NOWHERE, state_url=NOWHERE, opensearch_url="http://nowhere.invalid:9200")


class MemoryState:
    """Stands for :class:`etl_core.state.stores.StateSchema`: there are no tables to create."""

    def __init__(self) -> None:
        self.created = 0

    def create(self) -> None:
        self.created += 1


@dataclass
class World:
    """Everything one source's fake connections share: its rows and the state they leave."""

    table: list[tuple[Any, ...]] = field(default_factory=list)
    page_size: int = 2
    state: MemoryState = field(default_factory=MemoryState)
    sink: MemoryIndex = field(default_factory=MemoryIndex)
    cursors: MemoryCursorStore = field(default_factory=MemoryCursorStore)
    letters: MemoryLetterStore = field(default_factory=MemoryLetterStore)
    records: MemoryRecords = field(default_factory=MemoryRecords)
    lanes: MemoryLaneLock = field(default_factory=MemoryLaneLock)
    connects: list[str] = field(default_factory=list)
    """The scope of every ``connect``, in order."""
    closed: int = 0


WORLDS: dict[str, World] = {}


@contextmanager
def registered(world: World) -> Iterator[str]:
    """The world under a fresh name, for :class:`FakeServices`; forgotten on the way out."""
    name = uuid.uuid4().hex
    WORLDS[name] = world
    try:
        yield name
    finally:
        del WORLDS[name]


@dataclass
class FakeConnections(Connections):
    """:class:`Connections` over a :class:`World`: no engine, client or socket is ever made
    (``source_engine``, ``state_engine`` and ``client`` stay unset, so follow mode is not faked)."""

    world: World = field(default_factory=World)

    def __post_init__(self) -> None:
        w = self.world
        self.state = cast(StateSchema, w.state)
        self.sink = cast(OpenSearchSink, w.sink)
        self.dead_letters = cast(PostgresDeadLetterStore, w.letters)
        self.cursors = cast(PostgresCursorStore, w.cursors)
        self.lanes = cast(PostgresLaneLock, w.lanes)
        self.records = cast(MigrationRecords, w.records)

    def extractor(self, source: Source[R], **kwargs: Any) -> Extractor[R]:
        self._same(source)
        reader = TableExtractor(
            source, self.world.table, page_size=kwargs.get("page_size", self.world.page_size)
        )
        return cast(Extractor[R], reader)

    def describe_state(self) -> dict[str, str]:
        return {"database": "memory", "schema": "memory", "scope": self.scope}

    def close(self) -> None:
        self.world.closed += 1


class FakeServices(SyncServices):
    """``SyncServices`` whose ``connect`` opens :class:`FakeConnections` on the world it names."""

    world: str = ""

    @contextmanager
    def connect(self, scope: str) -> Iterator[Connections]:
        world = WORLDS[self.world]
        world.connects.append(scope)
        conns = FakeConnections(SETTINGS, scope, world=world)
        try:
            yield conns
        finally:
            conns.close()
