"""The metadata a version partition shows, built in one place for every event that shows it:
the index asset's materialisations, the backfill's hand-over, the sensor's observations."""

import math
from collections.abc import Sequence
from typing import Any

from dagster import MetadataValue

from etl_core import Cursor
from etl_core.flow.pipeline import SyncResult
from etl_core.model.records import Lag
from etl_core.operations.status import VersionStatus

CURSOR_KEY = "cursor"


def version_metadata(status: VersionStatus, lag: Lag, result: SyncResult | None = None) -> dict[str, Any]:
    """Where the version stands (cursor, lifecycle, lag, letters, the change log's upkeep) and,
    after a sync, what that sync did for it and for its lane."""
    cursor = status.cursor
    by_time = cursor if isinstance(cursor, Cursor) else None
    seconds = lag.seconds_behind(status.key)
    metadata: dict[str, Any] = {
        CURSOR_KEY: MetadataValue.json(cursor.to_json() if cursor else {}),
        "cursor_text": MetadataValue.text(cursor.describe() if cursor else ""),
        "cursor_changed_at": MetadataValue.timestamp(by_time.changed_at) if by_time else MetadataValue.null(),
        "cursor_key": MetadataValue.text(str(by_time.key) if by_time else ""),
        "lifecycle": MetadataValue.text(status.lifecycle.value),
        "open_dead_letters": MetadataValue.int(status.dead_letters),
        # unknown (never synced, or still walking the source): no value rather than a sentinel
        "lag_seconds": MetadataValue.null()
        if math.isinf(seconds)
        else MetadataValue.float(round(seconds, 3)),
        "lag_rows": MetadataValue.int(lag.rows_behind.get(status.key, 0)),
        # what may still arrive when it commits (it holds back nothing committed)
        "open_transactions": MetadataValue.int(len(lag.open_transactions)),
        **log_metadata(lag),
    }
    if result is not None:
        totals = result.versions[status.key]
        metadata.update(
            {
                "docs_indexed": MetadataValue.int(totals.indexed),
                "docs_deleted": MetadataValue.int(totals.deleted),
                "delete_not_found": MetadataValue.int(totals.not_found),
                "stale_skipped": MetadataValue.int(totals.stale),
                "dead_letters": MetadataValue.int(totals.dead_letters),
                "pages": MetadataValue.int(result.pages),
                "rows_read": MetadataValue.int(result.rows_read),
                "statements": MetadataValue.int(result.statements),
                "caught_up": MetadataValue.bool(result.caught_up),
                "lane": MetadataValue.text(",".join(result.versions)),
                "duration_s": MetadataValue.float(round(result.duration_s, 3)),
            }
        )
    return metadata


def log_metadata(lag: Lag) -> dict[str, Any]:
    """The change log's upkeep, on every partition (a lagging version lets it grow)."""
    if lag.log is None:
        return {}
    age = lag.log["oldest_entry_age_s"]
    return {
        "log_bytes": MetadataValue.int(lag.log["bytes"]),
        "log_entries_estimate": MetadataValue.int(lag.log["entries_estimate"]),
        "log_oldest_entry_age_s": MetadataValue.null() if age is None else MetadataValue.float(float(age)),
    }


def source_metadata(head: str | None, versions: Sequence[str], lag: Lag) -> dict[str, Any]:
    """What an observation of the source shows: the head, the committed changes waiting for the
    slowest version that is not retired, and the oldest one's age (null when nothing waits or a
    version is still walking the source)."""
    ages = [lag.seconds_behind(v) for v in versions]
    known = [a for a in ages if not math.isinf(a)]
    return {
        "head": MetadataValue.text(head or ""),
        "versions": MetadataValue.text(",".join(versions)),
        "waiting_rows": MetadataValue.int(max((lag.rows_behind.get(v, 0) for v in versions), default=0)),
        "oldest_waiting_age_s": MetadataValue.float(round(max(known), 3))
        if known and len(known) == len(ages) and max(known) > 0
        else MetadataValue.null(),
        "open_transactions": MetadataValue.int(len(lag.open_transactions)),
        **log_metadata(lag),
    }
