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
from datetime import datetime, timedelta
from itertools import groupby

from etl_core.cursor import Cursor


@dataclass(frozen=True, slots=True)
class Lane:
    versions: tuple[str, ...]
    catch_up: bool

    @property
    def first(self) -> str:
        return self.versions[0]

    @property
    def last(self) -> str:
        return self.versions[-1]


def is_behind(cursor: Cursor | None, head: datetime | None, close_enough: timedelta) -> bool:
    """Never synced, or further behind the newest change than ``close_enough``."""
    if head is None:  # an empty source: nobody is behind
        return False
    return cursor is None or head - cursor.changed_at > close_enough


def plan_lanes(
    versions: Sequence[str],
    cursors: Mapping[str, Cursor | None],
    head: datetime | None,
    close_enough: timedelta = timedelta(minutes=5),
) -> list[Lane]:
    """Group ``versions`` (in declaration order) into lanes.

    Close versions that are neighbours share a lane; every far-behind version gets its own lane,
    so two new versions backfilling at once never slow each other's catch-up to a shared cursor.
    """
    lanes: list[Lane] = []
    flags = [(v, is_behind(cursors.get(v), head, close_enough)) for v in versions]
    for behind, group in groupby(flags, key=lambda f: f[1]):
        keys = [v for v, _ in group]
        if behind:
            lanes.extend(Lane((k,), catch_up=True) for k in keys)
        else:
            lanes.append(Lane(tuple(keys), catch_up=False))
    return lanes
