"""Run tags that make one run cover a contiguous range of version partitions, as one lane."""

from __future__ import annotations

from collections.abc import Sequence

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LANE_TAG = "etl/lane"
PARTITION_TAG = "dagster/partition"
"""One partition, as the launchpad sets it (a job of checks only takes its partition this way)."""
VALIDATE_TAG = "etl/validate"
"""The version a validation run checks: the planner starts one per version at a time."""
SOURCE_TAG = "etl/source"
"""Lanes of two sources may both be ``v1-v2``: the planner looks for in-flight runs by both tags."""


def lane_tags(source: str, versions: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the contiguous range ``versions[0]..versions[-1]``."""
    return {
        RANGE_START: versions[0],
        RANGE_END: versions[-1],
        LANE_TAG: "-".join(versions),
        SOURCE_TAG: source,
    }
