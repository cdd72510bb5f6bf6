"""A fresh database and index prefix per test, and ways to read both sides back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers
from sqlalchemy import Engine, event, select

from catalogue.source import CATALOGUE, Product
from catalogue.versions import VERSIONS
from etl_core import IndexVersion, OpenSearchSink, PostgresCursorStore, PostgresDeadLetterStore, Source, sync
from etl_core.flow.pipeline import SyncResult
from etl_core.read.extract import Extractor
from etl_core.retry import Backoff
from etl_core.state.lanes import PostgresLaneLock
from etl_core.state.stores import PostgresShardPlanStore, StateSchema

FAST_BACKOFF = Backoff(attempts=3, initial=0.05, maximum=0.2)


@dataclass
class Harness:
    source_engine: Engine
    state_engine: Engine
    client: OpenSearch
    prefix: str
    page_size: int = 200
    source: Source[Product] = CATALOGUE
    """The demo with change capture; tests of change-column mode use ``by_column``."""
    statements: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.source_engine, "before_cursor_execute", self._count)
        self.state = StateSchema(self.state_engine, self.source.name)
        self.state.create()
        self.dead_letters = PostgresDeadLetterStore(self.state)
        self.cursors = PostgresCursorStore(self.state)
        self.lanes = PostgresLaneLock(self.state)
        self.shard_plans = PostgresShardPlanStore(self.state)
        self.sink = OpenSearchSink(self.client, backoff=FAST_BACKOFF)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def version(self, v: IndexVersion[Product], key: str | None = None) -> IndexVersion[Product]:
        """The demo version under this test's own index name (and optionally another key)."""
        key = key or v.key
        return dataclasses.replace(v, key=key, index=f"{self.prefix}_{key}_{v.index}")

    @property
    def versions(self) -> list[IndexVersion[Product]]:
        return [self.version(v) for v in VERSIONS]

    def extractor(self, **kw: Any) -> Extractor[Product]:
        kw.setdefault("page_size", self.page_size)
        kw.setdefault("backoff", FAST_BACKOFF)
        return Extractor(self.source_engine, self.source, **kw)

    def sync(self, versions: Sequence[IndexVersion[Any]], **kw: Any) -> SyncResult:
        kw.setdefault("extractor", self.extractor())
        kw.setdefault("sink", self.sink)
        kw.setdefault("dead_letters", self.dead_letters)
        kw.setdefault("cursors", self.cursors)
        with self.lanes.hold(versions):  # the one writer of these versions, as Operations.sync
            return sync(versions, exclusive=True, **kw)

    def source_records(self) -> Iterator[Product]:
        """Every source row as a record, read in one plain query (the test's own, not paged)."""
        sub = CATALOGUE.selectable.subquery()
        stmt = select(*(sub.c[f] for f in CATALOGUE.fields)).order_by(sub.c.id)
        with self.source_engine.connect() as conn:
            for row in conn.execute(stmt):
                yield Product(*row)

    def expected(self, version: IndexVersion[Product]) -> dict[str, Any]:
        """The version's transform of the whole source: what its index must hold, exactly."""
        out = {}
        for record in self.source_records():
            if record.deleted_at is not None or not version.wants(record):
                continue
            try:
                doc = version.transform(record)
            except ValueError:
                continue  # a dead letter, checked separately
            out[str(record.id)] = orjson.loads(orjson.dumps(doc))
        return out

    def documents(self, version: IndexVersion[Any]) -> dict[str, Any]:
        self.client.indices.refresh(index=version.index)
        return {
            hit["_id"]: hit["_source"]
            for hit in helpers.scan(self.client, index=version.index, query={"query": {"match_all": {}}})
        }

    def versions_of(self, version: IndexVersion[Any]) -> dict[str, int]:
        self.client.indices.refresh(index=version.index)
        return {
            hit["_id"]: hit["_version"]
            for hit in helpers.scan(
                self.client, index=version.index, version=True, query={"query": {"match_all": {}}}
            )
        }

    def selects(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith("SELECT")]
