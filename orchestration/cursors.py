"""Cursors as Dagster asset metadata, over the one record the command line keeps too.

Every acknowledged page saves its cursors in the source's state tables (``etl_state.<source>_…``),
where ``python -m etl_core`` reads and writes them as well: moving a source between the command
line and Dagster re-reads nothing. Every materialisation of a version partition records its cursor
for the UI and history; long runs also log ``AssetObservation`` checkpoints. A reader takes the
newest of all three (a merge: the maximum), so it never moves a version backwards, and a
deployment whose cursors exist only as metadata keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dagster import AssetKey, AssetObservation, AssetRecordsFilter, DagsterInstance, MetadataValue

from etl_core.cursor import Position, merge, position_from_json
from etl_core.protocols import CursorStore

CURSOR_KEY = "cursor"
_OBSERVATIONS_PAGE = 20


def _cursor_of(metadata: Mapping[str, Any]) -> Position | None:
    value = metadata.get(CURSOR_KEY)
    data = getattr(value, "value", value)
    if not isinstance(data, dict) or not data:
        return None
    return position_from_json(data)


def read_cursor(instance: DagsterInstance, asset_key: AssetKey, version: str) -> Position | None:
    """The newest cursor of a partition: its latest materialisation's, merged with its latest
    *checkpoint*. Reconcile and replay also observe the partition, without a cursor; the walk
    back through observations skips those, so a checkpoint is never hidden behind them."""
    flt = AssetRecordsFilter(asset_key=asset_key, asset_partitions=[version])
    found: Position | None = None
    for record in instance.fetch_materializations(flt, limit=1).records:
        if record.asset_materialization is not None:
            found = merge(found, _cursor_of(record.asset_materialization.metadata))
    page: str | None = None
    while True:
        result = instance.fetch_observations(flt, limit=_OBSERVATIONS_PAGE, cursor=page)
        for record in result.records:
            observed = record.asset_observation
            cursor = None if observed is None else _cursor_of(observed.metadata)
            if cursor is not None:
                return merge(found, cursor)
        if not result.has_more:
            return found
        page = result.cursor


def read_cursors(
    instance: DagsterInstance, asset_key: AssetKey, versions: Iterable[str], state: CursorStore
) -> dict[str, Position | None]:
    """Each version's newest cursor: its state record merged with the event log's."""
    wanted = list(versions)
    stored = state.load(wanted)
    return {v: merge(stored.get(v), read_cursor(instance, asset_key, v)) for v in wanted}


class DagsterCursorStore:
    """:class:`etl_core.protocols.CursorStore` on the Dagster event log.

    ``save`` is called after every acknowledged page and goes to the state record at once;
    checkpoints are written at most every ``every_s`` seconds (and on ``flush``), so a long
    backfill leaves a trail in the UI without flooding the event log.
    """

    def __init__(
        self,
        instance: DagsterInstance,
        asset_key: AssetKey,
        log_event: Callable[[AssetObservation], None],
        state: CursorStore,
        every_s: float = 5.0,
    ) -> None:
        self.instance = instance
        self.asset_key = asset_key
        self.state = state
        self.log_event = log_event
        self.every_s = every_s
        self.pending: dict[str, Position] = {}
        self.checkpoints = 0
        self._last = time.monotonic()

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]:
        """What the event log holds, merged with what this store saved and has not flushed yet
        (a follower syncs many times between two checkpoints)."""
        found = read_cursors(self.instance, self.asset_key, versions, self.state)
        return {k: merge(c, self.pending.get(k)) for k, c in found.items()}

    def save(self, cursors: Mapping[str, Position]) -> None:
        self.state.save(cursors)
        for key, cursor in cursors.items():
            merged = merge(self.pending.get(key), cursor)
            assert merged is not None
            self.pending[key] = merged
        if time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        for key, cursor in self.pending.items():
            self.log_event(
                AssetObservation(
                    asset_key=self.asset_key,
                    partition=key,
                    metadata={
                        CURSOR_KEY: MetadataValue.json(cursor.to_json()),
                        "checkpoint": MetadataValue.bool(True),
                    },
                )
            )
            self.checkpoints += 1
        self.pending.clear()
        self._last = time.monotonic()
