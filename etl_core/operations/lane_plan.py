"""Pure lane planning: which versions share one extraction in the next runs.

A version far behind the source head (a new one being backfilled) gets a catch-up lane of its own,
so the live versions' extraction stays small and fresh; once it is within ``close_enough`` of the
head, it joins the others and the lanes merge into one extraction.

Lanes are contiguous runs of versions in declaration order, because an orchestrator run covers one
contiguous range of partitions (Dagster's dynamic partitions, for one). Two close versions separated
by a far one therefore become two lanes: correct, merely one extraction more until they catch up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from typing import TYPE_CHECKING

from etl_core.model.cursor import LogCursor, Position
from etl_core.model.records import Lag

if TYPE_CHECKING:
    from etl_core.settings import Declared


@dataclass(frozen=True, slots=True)
class Lane:
    versions: tuple[str, ...]
    catch_up: bool


@dataclass(frozen=True, slots=True)
class CloseEnough:
    """How far behind the source head a version may be and still share the live lane: in time
    (for a trickle of changes) and in rows (a bulk load stamps many rows with one instant)."""

    seconds: timedelta = timedelta(minutes=5)
    rows: int = 10_000

    @classmethod
    def of(cls, declared: Declared) -> CloseEnough:
        """``ETL_CLOSE_ENOUGH_S`` and ``ETL_CLOSE_ENOUGH_ROWS`` (default 300 s and 10 000 rows)."""
        return cls(timedelta(seconds=declared.etl_close_enough_s), declared.etl_close_enough_rows)


def is_behind(version: str, cursor: Position | None, lag: Lag, close: CloseEnough) -> bool:
    """Never synced (with something to read), still backfilling, or further behind the newest
    change than ``close`` allows."""
    rows = lag.rows_behind.get(version, 0)
    if cursor is None or (isinstance(cursor, LogCursor) and cursor.backfilling):
        return rows > 0
    return lag.seconds_behind(version) > close.seconds.total_seconds() or rows > close.rows


def plan_lanes(
    versions: Sequence[str],
    cursors: Mapping[str, Position | None],
    lag: Lag,
    close: CloseEnough = CloseEnough(),
) -> list[Lane]:
    """Group ``versions`` (in declaration order) into lanes.

    Close versions that are neighbours share a lane. A far-behind version gets a catch-up lane of
    its own, unless its neighbour is at the very same cursor (two versions declared together
    both start from nothing): they would read the same pages anyway, so they read them once.
    """
    lanes: list[Lane] = []
    flags = [(v, is_behind(v, cursors.get(v), lag, close)) for v in versions]
    for behind, group in groupby(flags, key=lambda f: f[1]):
        keys = [v for v, _ in group]
        if behind:
            for _, same in groupby(keys, key=lambda k: cursors.get(k)):
                lanes.append(Lane(tuple(same), catch_up=True))
        else:
            lanes.append(Lane(tuple(keys), catch_up=False))
    return lanes
