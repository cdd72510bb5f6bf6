"""Cursors in Dagster: shown as metadata, kept in one place.

The truth is the source's state tables (``etl_state.<source>__…``): every acknowledged page saves
its cursors there, the command line reads and writes the same rows, and every reader (the planner,
the asset, trims) reads only them. Dagster *shows* them: each materialisation of a version
partition records its cursor, and a long run logs ``AssetObservation`` checkpoints as a trail in
the UI. Nothing reads those back, except once: :func:`import_cursors` copies a cursor that exists
only as metadata (a deployment from before the state tables held them) into the state table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dagster import AssetKey, AssetObservation, AssetRecordsFilter, DagsterInstance, MetadataValue

from etl_core.logs import event
from etl_core.model.cursor import Position, merge, position_from_json
from etl_core.model.protocols import CursorStore
from etl_core.state.stores import PostgresCursorStore
from orchestration.metadata import CURSOR_KEY

_OBSERVATIONS_PAGE = 20


def _cursor_of(metadata: Mapping[str, Any]) -> Position | None:
    value = metadata.get(CURSOR_KEY)
    data = getattr(value, "value", value)
    if not isinstance(data, dict) or not data:
        return None
    return position_from_json(data)


def read_cursor(instance: DagsterInstance, asset_key: AssetKey, version: str) -> Position | None:
    """The newest cursor a partition's metadata shows: its latest materialisation's, merged with
    its latest *checkpoint* (for :func:`import_cursors` only). Reconcile and replay also observe
    the partition without a cursor; the walk back skips those, so no checkpoint hides behind them."""
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


def import_cursors(
    instance: DagsterInstance, asset_key: AssetKey, versions: Iterable[str], state: PostgresCursorStore
) -> dict[str, Position]:
    """The one-off import, for a deployment whose cursors exist only as metadata: when the state
    table holds no cursor of this source at all, each version whose partition's metadata holds
    one gets it saved there. Once any cursor is in the table this reads nothing, so a version an
    operator rebuilds by deleting its cursor row is not handed its old cursor back."""
    if state.versions():
        return {}
    found = {v: c for v in versions if (c := read_cursor(instance, asset_key, v)) is not None}
    if found:
        state.save(found)
        event("cursors_imported_from_dagster", versions=sorted(found))
    return found


class DagsterCursorStore:
    """:class:`etl_core.model.protocols.CursorStore` on the state table, shown in the Dagster UI.

    ``save`` is called for acknowledged pages, in order (from the pipeline's checkpoint thread,
    :class:`etl_core.flow.progress.Checkpoints`), and goes to the state table at once; the
    newest cursors are shown as checkpoint observations at most every ``every_s`` seconds (and
    on ``flush``), so a long backfill leaves a trail in the UI without flooding the event log.
    """

    def __init__(
        self,
        asset_key: AssetKey,
        log_event: Callable[[AssetObservation], None],
        state: CursorStore,
        every_s: float = 5.0,
    ) -> None:
        self.asset_key = asset_key
        self.state = state
        self.log_event = log_event
        self.every_s = every_s
        self.pending: dict[str, Position] = {}
        self.checkpoints = 0
        self._last = time.monotonic()

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]:
        """The state table's, the one truth."""
        return self.state.load(versions)

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
