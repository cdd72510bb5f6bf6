"""Wiring: from :class:`Settings` to the engines, client and stores one source's operations use.

The CLI, the tests and the Dagster resources all build the same objects the same way here; what is
done with them lives in :mod:`etl_core.operations.steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from opensearchpy import OpenSearch
from sqlalchemy import Engine

from etl_core.errors import ConfigError
from etl_core.model.source import Source
from etl_core.operations.lifecycle import MigrationRecords
from etl_core.read.extract import Extractor
from etl_core.retry import DEFAULT_BACKOFF, Backoff
from etl_core.settings import Settings, make_engine
from etl_core.state.lanes import PostgresLaneLock
from etl_core.state.stores import (
    PostgresCursorStore,
    PostgresDeadLetterStore,
    PostgresShardPlanStore,
    StateSchema,
)
from etl_core.write.sink import OpenSearchSink, make_client

R = TypeVar("R")


@dataclass
class Connections:
    """Everything one source's syncs use. ``scope`` is the source's name: its state (cursors,
    dead letters, validations, retirements) lives in tables of its own."""

    settings: Settings
    scope: str
    backoff: Backoff = DEFAULT_BACKOFF
    source_engine: Engine = field(init=False)
    state_engine: Engine = field(init=False)
    client: OpenSearch = field(init=False)
    state: StateSchema = field(init=False)
    sink: OpenSearchSink = field(init=False)
    dead_letters: PostgresDeadLetterStore = field(init=False)
    cursors: PostgresCursorStore = field(init=False)
    lanes: PostgresLaneLock = field(init=False)
    shard_plans: PostgresShardPlanStore = field(init=False)
    records: MigrationRecords = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.source_engine = make_engine(s.source_url)
        self.state_engine = self.source_engine if s.state_url == s.source_url else make_engine(s.state_url)
        self.client = make_client(
            s.opensearch_url,
            user=s.opensearch_user,
            password=s.opensearch_password,
            verify_certs=s.opensearch_verify_certs,
            ca_certs=s.opensearch_ca_certs,
            connections=s.bulk_in_flight + 2,
        )
        self.state = StateSchema(self.state_engine, self.scope, s.state_schema, variable=s.state_variable)
        self.sink = OpenSearchSink(
            self.client,
            max_chunk_bytes=s.bulk_max_bytes,
            backoff=self.backoff,
            describe=f"OpenSearch at {s.opensearch_url}",
        )
        self.dead_letters = PostgresDeadLetterStore(self.state)
        self.cursors = PostgresCursorStore(self.state)
        self.lanes = PostgresLaneLock(self.state)
        self.shard_plans = PostgresShardPlanStore(self.state)
        self.records = MigrationRecords(self.state)

    def _same(self, source: Source[Any]) -> None:
        if source.name != self.scope:
            raise ConfigError(
                f"these connections keep the state of source {self.scope!r}, not {source.name!r}: "
                f"open Connections(settings, {source.name!r}) for it"
            )

    def extractor(self, source: Source[R], **kwargs: Any) -> Extractor[R]:
        self._same(source)
        kwargs.setdefault("page_size", self.settings.page_size)
        kwargs.setdefault("backoff", self.backoff)
        return Extractor(self.source_engine, source, **kwargs)

    def describe_state(self) -> dict[str, str]:
        """Where this source's state lives (no password): ``status`` says it, so a user can see
        that the command line and Dagster read the same cursors."""
        return {
            # the query is left out too: libpq takes ?password=… there, which rendering keeps
            "database": self.state_engine.url.set(query={}).render_as_string(hide_password=True),
            "schema": self.settings.state_schema,
            "scope": self.scope,
        }

    def close(self) -> None:
        self.source_engine.dispose()
        self.state_engine.dispose()
        self.client.close()
