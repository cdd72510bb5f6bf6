"""Bulk loading and dead letters, per page, for all versions of the lane in one write."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from etl_core.model import DeadLetter, RoutedPage
from etl_core.protocols import DeadLetterStore, Sink

R = TypeVar("R")


def load(sink: Sink) -> Callable[[Iterator[RoutedPage[R]]], Iterator[RoutedPage[R]]]:
    """Send every version's actions of a page together (one ``_bulk`` stream) and fold the
    outcomes back into each version's batch. Per-document failures become dead letters of that
    version only; the rest of the page proceeds."""

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[RoutedPage[R]]:
        for routed in pages:
            actions = [a for b in routed.batches.values() for a in b.actions]
            if actions:
                for outcome in sink.write(actions):
                    batch = routed.batches[outcome.action.version]
                    if outcome.status == "indexed":
                        batch.indexed += 1
                    elif outcome.status == "deleted":
                        batch.deleted += 1
                    elif outcome.status == "stale":
                        batch.stale += 1
                    else:  # completed with the record's payload by park_dead_letters
                        batch.dead_letters.append(
                            DeadLetter(
                                outcome.action.version,
                                outcome.action.id,
                                outcome.reason or "rejected",
                                None,
                                None,
                            )
                        )
            yield routed

    return stage


def park_dead_letters(
    store: DeadLetterStore, payload_of: Callable[[Any], Mapping[str, Any]]
) -> Callable[[Iterator[RoutedPage[R]]], Iterator[RoutedPage[R]]]:
    """Write the page's dead letters durably *before* the cursor moves past them."""

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[RoutedPage[R]]:
        for routed in pages:
            letters = [d for b in routed.batches.values() for d in b.dead_letters]
            if letters:
                by_key = {str(c.position.key): c for c in routed.page.changes}
                store.put(
                    [
                        d
                        if d.payload is not None
                        else DeadLetter(
                            d.version,
                            d.key,
                            d.reason,
                            by_key[d.key].position.changed_at,
                            payload_of(by_key[d.key].record),
                        )
                        for d in letters
                    ]
                )
            yield routed

    return stage
