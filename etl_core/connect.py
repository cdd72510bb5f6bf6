"""Wiring: from :class:`Settings` to the engines, client and stores one sync needs.

The CLI, the tests and the Dagster resources all build the same objects the same way here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opensearchpy import OpenSearch
from sqlalchemy import Engine

from etl_core.cursor import lowest
from etl_core.errors import ConfigError
from etl_core.extract import Extractor
from etl_core.follow import FollowResult, Listener, follow
from etl_core.lanes import PostgresLaneLock
from etl_core.lifecycle import Lifecycles
from etl_core.logs import event
from etl_core.pipeline import SyncResult, sync
from etl_core.reconcile import reconcile
from etl_core.retry import DEFAULT_BACKOFF, Backoff
from etl_core.settings import Settings, make_engine
from etl_core.sink import OpenSearchSink, make_client
from etl_core.source import Source
from etl_core.stores import (
    PostgresCursorStore,
    PostgresDeadLetterStore,
    PostgresShardPlanStore,
    StateSchema,
)
from etl_core.versions import IndexVersion

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
        self.state = StateSchema(self.state_engine, self.scope, s.state_schema)
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

    def sync(self, source: Source[R], versions: Sequence[IndexVersion[R]], **kwargs: Any) -> SyncResult:
        """:func:`etl_core.sync` with these connections, as the versions' only writer (their lane
        lock held, or :class:`~etl_core.lanes.LaneBusy`); any argument may be overridden."""
        self._same(source)
        with self.lanes.hold(versions):
            return self._sync(source, versions, **kwargs)

    def _sync(self, source: Source[R], versions: Sequence[IndexVersion[R]], **kwargs: Any) -> SyncResult:
        kwargs.setdefault("extractor", self.extractor(source))
        kwargs.setdefault("sink", self.sink)
        kwargs.setdefault("dead_letters", self.dead_letters)
        kwargs.setdefault("cursors", self.cursors)
        kwargs.setdefault("in_flight", self.settings.bulk_in_flight)
        result = sync(versions, exclusive=True, **kwargs)
        if result.truncated:
            self._after_truncate(source, versions, result)
        return result

    def _after_truncate(
        self, source: Source[R], versions: Sequence[IndexVersion[R]], result: SyncResult
    ) -> None:
        """A delivered TRUNCATE names no key: reconcile the lane's versions with the source at
        once (orphans deleted, changed documents rewritten), still holding the lane lock."""
        drifts = reconcile(
            versions, self.extractor(source), self.sink, repair=True, dead_letters=self.dead_letters
        )
        event(
            "truncate_reconciled",
            tables=list(result.truncated),
            **{f"{k}_repaired": d.repaired for k, d in drifts.items()},
        )

    def trim(self, source: Source[Any], versions: Sequence[IndexVersion[Any]]) -> int:
        """Delete the change-log entries every non-retired version of ``versions`` (pass all the
        declared ones) has been delivered; how many. The command line trims after every sync and
        follow, as the Dagster asset does."""
        self._same(source)
        retired = Lifecycles(self.state).retired()
        active = [v.key for v in versions if v.key not in retired]
        cursors = self.cursors.load(active)
        return self.extractor(source).trim([cursors[k] for k in active])

    def follow(
        self,
        source: Source[R],
        versions: Sequence[IndexVersion[R]],
        *,
        window_s: float,
        debounce_s: float = 0.05,
        idle_s: float | None = None,
        keep_results: bool = False,
        **kwargs: Any,
    ) -> FollowResult:
        """:func:`etl_core.follow.follow` with these connections: sync on every commit's
        notification until ``window_s`` has passed. Needs a source with tracking."""
        self._same(source)
        if source.tracking is None:
            raise ConfigError(
                f"source {source.name!r} has no tracking to follow; declare tracking=Tracking(...)"
            )
        extractor = kwargs.pop("extractor", None) or self.extractor(source)
        listener = Listener(self.source_engine.url, source.tracking.channel)

        def pending(result: SyncResult) -> bool:
            return extractor.pending(lowest([t.cursor for t in result.versions.values()]))

        try:
            with self.lanes.hold(versions):
                return follow(
                    lambda: self._sync(source, versions, extractor=extractor, **kwargs),
                    listener,
                    window_s=window_s,
                    debounce_s=debounce_s,
                    idle_s=self.settings.follow_poll_s if idle_s is None else idle_s,
                    pending=pending,
                    keep_results=keep_results,
                )
        finally:
            listener.close()

    def close(self) -> None:
        self.source_engine.dispose()
        self.state_engine.dispose()
        self.client.close()
