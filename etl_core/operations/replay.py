"""Dead-letter replay: re-read the rows by key (fresh data), re-transform, re-index.

A letter is resolved when its key now indexes (or deletes) cleanly, or its row is gone; otherwise
it stays open with the new reason and one more attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from etl_core.flow.route import route_page
from etl_core.logs import event
from etl_core.model.protocols import SearchIndex
from etl_core.model.records import Action, RoutedPage
from etl_core.model.versions import IndexVersion
from etl_core.read.extract import Extractor
from etl_core.state.stores import PostgresDeadLetterStore
from etl_core.write.load import load, park_dead_letters

R = TypeVar("R")


@dataclass
class ReplayResult:
    version: str
    resolved: int = 0
    still_failing: int = 0
    gone: int = 0


def replay_dead_letters(
    versions: Sequence[IndexVersion[R]],
    *,
    extractor: Extractor[R],
    sink: SearchIndex,
    dead_letters: PostgresDeadLetterStore,
    batch: int = 500,
) -> dict[str, ReplayResult]:
    source = extractor.source
    results = {}
    for version in versions:
        result = results[version.key] = ReplayResult(version.key)
        keys = [letter["key"] for letter in dead_letters.open_letters(version.key)]
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            pages = [extractor.by_keys([source.key_from_id(k) for k in chunk])]
            routed: list[RoutedPage[R]] = [
                route_page(p, [version], {version.key: None}, source.record_to_json) for p in pages
            ]
            # rows hard-deleted since they failed: make sure no document is left, then resolve
            present = {str(c.key) for p in pages for c in p.changes if c.record is not None}
            gone = [k for k in chunk if k not in present]
            leftovers = sink.fetch(version.index, gone)
            if leftovers:
                sink.write(
                    [
                        Action(version.key, version.index, "delete", k, v, None)
                        for k, (v, _) in leftovers.items()
                    ]
                )
            failing: set[str] = set()
            for done in park_dead_letters(dead_letters)(load(sink, source.record_to_json)(iter(routed))):
                failing |= {d.key for d in done.batches[version.key].dead_letters}
            ok = [k for k in chunk if k in present and k not in failing]
            dead_letters.resolve(version.key, ok + gone)
            result.resolved += len(ok)
            result.gone += len(gone)
            result.still_failing += len(failing)
        event(
            "dead_letters_replayed",
            version=version.key,
            resolved=result.resolved,
            still_failing=result.still_failing,
            gone=result.gone,
        )
    return results
