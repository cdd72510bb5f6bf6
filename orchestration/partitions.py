"""Index versions as the partitions of one asset."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DynamicPartitionsDefinition

VERSION_PARTITIONS = DynamicPartitionsDefinition(name="index_versions")

# Only one run may sync at a time: the instance's pool limit (dagster.yaml) enforces it, and the
# core's monotonic cursor merge is the second line of defence.
SYNC_POOL = "search_index_sync"

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LANE_TAG = "etl/lane"


def lane_tags(versions: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the contiguous range ``versions[0]..versions[-1]``."""
    return {RANGE_START: versions[0], RANGE_END: versions[-1], LANE_TAG: "-".join(versions)}
