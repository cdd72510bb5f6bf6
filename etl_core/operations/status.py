"""Where each version stands: its cursor, lag, open dead letters and lifecycle state.

One function describes every version, for every surface: the command line's ``status``, and the
``lifecycle`` each materialisation records in Dagster. The state is derived, never stored: the
read alias in OpenSearch says *live*, the state tables say *retired* and *validated*, the cursor
and the lag say *building* or *catching up*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etl_core.model.cursor import Position
from etl_core.model.protocols import Aliases, DeadLetterStore
from etl_core.model.records import Lag
from etl_core.model.versions import IndexVersion, Lifecycle
from etl_core.operations.lane_plan import CloseEnough, is_behind
from etl_core.operations.lifecycle import MigrationRecords, lifecycle_of


@dataclass(frozen=True, slots=True)
class VersionStatus:
    key: str
    index: str
    lifecycle: Lifecycle
    cursor: Position | None
    lag_rows: int
    lag_seconds: float | None
    """None: never synced, or still walking the source (no change-log age to give)."""
    dead_letters: int
    validated: bool | None
    """The latest validation's outcome; None when it was never validated."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.key,
            "index": self.index,
            "lifecycle": self.lifecycle.value,
            "cursor": self.cursor.to_json() if self.cursor else None,
            "cursor_text": self.cursor.describe() if self.cursor else "",
            "lag_rows": self.lag_rows,
            "lag_seconds": self.lag_seconds,
            "dead_letters": self.dead_letters,
            "validated": self.validated,
        }


def describe_versions(
    versions: Sequence[IndexVersion[Any]],
    *,
    cursors: Mapping[str, Position | None],
    lag: Lag,
    records: MigrationRecords,
    dead_letters: DeadLetterStore,
    sink: Aliases,
    alias: str,
    close: CloseEnough,
) -> list[VersionStatus]:
    live = set(sink.alias_targets(alias))
    retired = records.retired()
    found = []
    for v in versions:
        cursor = cursors.get(v.key)
        validation = records.latest_validation(v.key)
        validated = None if validation is None else validation[0]
        seconds = lag.seconds_behind(v.key)
        found.append(
            VersionStatus(
                key=v.key,
                index=v.index,
                lifecycle=lifecycle_of(
                    retired=v.key in retired or v.retired,
                    live=v.index in live,
                    validated=bool(validated),
                    cursor=cursor,
                    behind=is_behind(v.key, cursor, lag, close),
                ),
                cursor=cursor,
                lag_rows=lag.rows_behind.get(v.key, 0),
                lag_seconds=None if math.isinf(seconds) else round(seconds, 3),
                dead_letters=dead_letters.count_open(v.key),
                validated=validated,
            )
        )
    return found
