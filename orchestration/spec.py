"""One source as the Dagster layer builds it: what every asset, check, job, sensor and schedule
of the source needs, and the rules they share (which version a key names, which resource holds
the connections)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import Failure
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy

from etl_core import ConfigError, IndexVersion, Source
from etl_core.flow.collector import tune_for_syncs
from etl_core.model.versions import pick
from etl_core.operations.connect import Connections
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.lifecycle import LifecycleRefused
from etl_core.operations.steps import Operations
from etl_core.state.lanes import LaneBusy
from orchestration.naming import Names
from orchestration.resources import SyncServices, services_of


@dataclass(frozen=True)
class SourceSpec:
    source: Source[Any]
    versions: tuple[IndexVersion[Any], ...]
    names: Names
    read_alias: str
    close: CloseEnough
    resource_key: str = "sync_services"
    owners: tuple[str, ...] = ()
    """Owners of the source's assets, as Dagster shows them (``team:search``, an e-mail)."""
    freshness: TimeWindowFreshnessPolicy | None = None
    """The index asset's freshness windows, judged on the real lag (:mod:`orchestration.freshness`)."""

    def version(self, key: str) -> IndexVersion[Any]:
        """The version a partition or a job's config names (a partition left over from a version
        removed from code lands here: the Failure says to declare it or delete the partition)."""
        (found,) = self.pick([key], set())
        return found

    def pick(self, wanted: Sequence[str], retired: set[str]) -> list[IndexVersion[Any]]:
        """:func:`etl_core.model.versions.pick` as a run's Failure; retired versions left out."""
        try:
            chosen = pick(self.versions, wanted)
        except ConfigError as exc:
            raise Failure(
                f"source {self.source.name!r}: {exc} (declare it, or delete the partition)"
            ) from None
        return [v for v in chosen if v.key not in retired]

    def engine(self, resources: Any) -> SyncServices:
        return services_of(resources, self.resource_key)

    @contextmanager
    def connect(self, resources: Any) -> Iterator[Connections]:
        """Connections for this source, from the run's resources, with its state tables
        created (once per process). A Dagster run's process is the project's own, so its syncs
        may tune the garbage collector (:func:`etl_core.flow.collector.tune_for_syncs`)."""
        tune_for_syncs()
        with self.engine(resources).connect(self.source.name) as conns:
            conns.state.create()
            yield conns

    @contextmanager
    def operate(self, resources: Any) -> Iterator[Operations]:
        """:class:`etl_core.operations.steps.Operations` of this source, as the command line has them;
        what they refuse (a busy lane, a cut-over without validation, a retired version) fails
        the run with the message the command line prints."""
        with self.connect(resources) as conns:
            try:
                yield Operations(conns, self.source, self.versions, self.read_alias)
            except (LaneBusy, LifecycleRefused, ConfigError) as exc:
                raise Failure(str(exc)) from None
