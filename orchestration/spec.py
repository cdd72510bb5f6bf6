"""One source as the Dagster layer builds it: what every asset, check, job, sensor and schedule
of the source needs, and the rules they share (which version a key names, which resource holds
the connections)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dagster import Failure

from etl_core import IndexVersion, Source
from etl_core.connect import Connections
from etl_core.planner import CloseEnough
from orchestration.naming import Names
from orchestration.resources import SyncEngine, engine_of


@dataclass(frozen=True)
class SourceSpec:
    source: Source[Any]
    versions: tuple[IndexVersion[Any], ...]
    names: Names
    read_alias: str
    close: CloseEnough
    resource_key: str = "sync_engine"
    by_key: Mapping[str, IndexVersion[Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_key", {v.key: v for v in self.versions})

    def version(self, key: str) -> IndexVersion[Any]:
        """The version a partition or a job's config names, or a Failure that lists the declared
        ones (a partition left over from a version removed from code lands here)."""
        if key not in self.by_key:
            raise Failure(
                f"version {key!r} of source {self.source.name!r} is not declared in code; declared "
                f"are {sorted(self.by_key)} (declare it, or delete the partition)"
            )
        return self.by_key[key]

    def pick(self, wanted: Sequence[str], retired: set[str]) -> list[IndexVersion[Any]]:
        """The named versions (all declared ones when none is named), retired ones left out."""
        chosen = [self.version(k) for k in wanted] if wanted else list(self.versions)
        return [v for v in chosen if v.key not in retired]

    def engine(self, resources: Any) -> SyncEngine:
        return engine_of(resources, self.resource_key)

    @contextmanager
    def connect(self, resources: Any) -> Iterator[Connections]:
        """Connections for this source, from the run's resources, with its state tables
        created (once per process)."""
        with self.engine(resources).connect(self.source.name) as conns:
            conns.state.create()
            yield conns
