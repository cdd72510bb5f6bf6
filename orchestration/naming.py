"""Every Dagster object of a source is named after the source.

Two sources then live in one code location and one instance without a clash: their assets,
partitions, jobs, sensors, schedules, pools and check ops all differ, and so do the run tags the
planner looks for when it asks whether a lane already has a run in flight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dagster import AssetKey, DynamicPartitionsDefinition

from etl_core import ConfigError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Names:
    """The names of one source's Dagster objects (``source`` is the source's name)."""

    source: str
    partitions: DynamicPartitionsDefinition = field(init=False, compare=False)
    pool_name: str | None = None
    """The pool the source's runs hold, when not its own ``<source>_sync`` (sources that name one
    pool never sync at once)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.source):
            raise ConfigError(
                f"source name {self.source!r} names Dagster objects and must be letters, digits "
                "and underscores, starting with a letter (e.g. 'catalogue')"
            )
        if self.pool_name is not None and not _NAME.match(self.pool_name):
            raise ConfigError(
                f"pool {self.pool_name!r} of source {self.source!r} must be letters, digits and "
                "underscores, starting with a letter (e.g. 'shop_db')"
            )
        object.__setattr__(self, "partitions", DynamicPartitionsDefinition(name=self.partitions_name))

    @property
    def partitions_name(self) -> str:
        return f"{self.source}_versions"

    @property
    def group(self) -> str:
        return self.source

    @property
    def asset(self) -> str:
        """The index asset, one partition per version; also the name of its op."""
        return f"{self.source}_index"

    @property
    def asset_key(self) -> AssetKey:
        return AssetKey(self.asset)

    @property
    def source_asset(self) -> str:
        return f"{self.source}_source"

    @property
    def pool(self) -> str:
        """One run at a time per source (``dagster.yaml``: every pool's default limit is 1)."""
        return self.pool_name or f"{self.source}_sync"

    @property
    def checks(self) -> str:
        return f"{self.source}_validation"

    def job(self, step: str) -> str:
        """``sync``, ``validate``, ``cut_over``, ``retire``, ``replay``, ``reconcile``,
        ``change_tracking``."""
        return f"{self.source}_{step}"

    def op(self, name: str) -> str:
        """Op names are global in a code location: two sources' ``swap_read_alias`` would clash."""
        return f"{self.source}_{name}"

    @property
    def planner(self) -> str:
        return f"{self.source}_migration_planner"

    @property
    def freshness(self) -> str:
        return f"{self.source}_freshness"

    @property
    def reconcile_schedule(self) -> str:
        return f"{self.source}_reconcile_nightly"
