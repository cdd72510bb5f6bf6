"""Bulk loading and dead letters, per page, for all versions of the lane in one write."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from etl_core.flow.route import changed_at
from etl_core.model.protocols import DeadLetterStore, Sink
from etl_core.model.records import Action, Change, DeadLetter, Outcome, RoutedPage, VersionBatch

R = TypeVar("R")


def _prune_deletes(sink: Sink, batch: VersionBatch, index_is_new: bool) -> None:
    """Drop the deletes that have nothing to delete, before they cost a write each.

    A record a version's predicate rejects (or a soft-deleted row) becomes a delete, because it
    may have matched before; mostly it did not. Into an index this run created nothing needs
    deleting at all (within one run each key is read once, below a fixed watermark); elsewhere
    one realtime ``_mget`` tells which of the page's deletes would find a document.
    """
    deletes = [a for a in batch.actions if a.op == "delete"]
    if not deletes:
        return
    present = set() if index_is_new else sink.existing(deletes[0].index_name, [a.id for a in deletes])
    keep: list[Action] = []
    for action in batch.actions:
        if action.op == "delete" and action.id not in present:
            batch.not_found += 1
            batch.written.append(action.id)  # the version holds no document for it: as wanted
        else:
            keep.append(action)
    batch.actions = keep


def load(
    sink: Sink,
    payload_of: Callable[[Any], Mapping[str, Any]],
    new_indices: Collection[str] = (),
    *,
    prune: bool = True,
    in_flight: int = 1,
) -> Callable[[Iterator[RoutedPage[R]]], Iterator[RoutedPage[R]]]:
    """Send every version's actions of a page together and fold the outcomes back into each
    version's batch. Per-document failures become dead letters of that version only (with the
    record's payload, so they can be replayed); the rest of the page proceeds.

    ``new_indices``: keys of the versions whose index this run created (nothing to delete there).
    ``prune``: skip deletes of absent documents; only for the one writer of these versions.
    ``in_flight``: how many pages' writes may be on their way at once. With more than one, the
    next page is sent while the stages after this one (dead letters, cursors) finish the last,
    so the node is not idle while its answer is read and the checkpoint committed. Pages still
    come out in order, each only once its own write (and every earlier one) is acknowledged, so
    cursors move exactly as with one. Only pages that hold distinct keys overlap
    (:meth:`Page.overlap_group`: the pages of a walk by key, the pages of one log batch): the
    first page of another group waits for every write before it, because it may write a key
    one of them holds and its probe for existing documents must see that write. A page's probe
    may run while earlier pages of its group are in flight: they hold other keys. (Before log
    pages were grouped by batch, an incremental sync wrote one page at a time: benchmarks/README.md,
    issue 22's second session.)
    """

    def send(routed: RoutedPage[R]) -> list[Outcome]:
        actions = [a for b in routed.batches.values() for a in b.actions]
        return sink.write(actions) if actions else []

    def prepare(routed: RoutedPage[R]) -> None:
        if prune:
            for key, batch in routed.batches.items():
                _prune_deletes(sink, batch, key in new_indices and routed.page.first_visit)

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[RoutedPage[R]]:
        window: deque[tuple[RoutedPage[R], Future[list[Outcome]]]] = deque()

        def acknowledged(keep: int) -> Iterator[RoutedPage[R]]:
            """The oldest pages of the window, answered, until ``keep`` are left on their way."""
            while len(window) > keep:
                done, outcomes = window.popleft()
                yield _fold(done, outcomes.result(), payload_of)

        # threads start at the first write sent ahead: none with one in flight
        with ThreadPoolExecutor(max_workers=max(in_flight, 1), thread_name_prefix="etl-bulk") as writers:
            flying: object | None = None  # the overlap group of the pages in the window
            try:
                for routed in pages:
                    group = routed.page.overlap_group()
                    if in_flight <= 1 or group is None:  # may revisit any key in flight
                        yield from acknowledged(0)
                        prepare(routed)
                        yield _fold(routed, send(routed), payload_of)
                        continue
                    if group != flying:  # its keys may be among those of the window
                        yield from acknowledged(0)
                        flying = group
                    prepare(routed)
                    window.append((routed, writers.submit(send, routed)))
                    yield from acknowledged(in_flight - 1)
                yield from acknowledged(0)
            finally:
                for _, outcomes in window:  # a failure or an early stop: send nothing more
                    outcomes.cancel()

    return stage


def _fold(
    routed: RoutedPage[R], outcomes: list[Outcome], payload_of: Callable[[Any], Mapping[str, Any]]
) -> RoutedPage[R]:
    """The write's outcomes into each version's batch of the page."""
    by_key: dict[str, Change[R]] = {}  # built at the page's first failure only
    for outcome in outcomes:
        batch = routed.batches[outcome.action.version]
        status = outcome.status
        if status == "failed":
            if not by_key:
                by_key = {str(c.key): c for c in routed.page.changes}
            change = by_key[outcome.action.id]
            batch.dead_letters.append(
                DeadLetter(
                    outcome.action.version,
                    outcome.action.id,
                    outcome.reason or "rejected",
                    changed_at(change),
                    None if change.record is None else payload_of(change.record),
                )
            )
            continue
        if status == "indexed":
            batch.indexed += 1
        elif status == "deleted":
            batch.deleted += 1
        elif status == "not_found":
            batch.not_found += 1
        else:
            batch.stale += 1
            continue  # a newer write is there: it says nothing about this one
        batch.written.append(outcome.action.id)
    return routed


def park_dead_letters(store: DeadLetterStore) -> Callable[[Iterator[RoutedPage[R]]], Iterator[RoutedPage[R]]]:
    """Write the page's dead letters durably *before* the cursor moves past them."""

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[RoutedPage[R]]:
        for routed in pages:
            letters = [d for b in routed.batches.values() for d in b.dead_letters]
            if letters:
                store.put(letters)
            yield routed

    return stage


def resolve_dead_letters(
    store: DeadLetterStore, versions: Collection[str]
) -> Callable[[Iterator[RoutedPage[R]]], Iterator[RoutedPage[R]]]:
    """A successful write of a key resolves that version's open letter for it: fresher data
    fixed what failed before, so validation need not wait for a replay.

    The open keys are read once per run; a page costs a statement only when it writes a key
    that has a letter open."""

    def stage(pages: Iterator[RoutedPage[R]]) -> Iterator[RoutedPage[R]]:
        open_keys = store.open_keys(versions)
        for routed in pages:
            for key, batch in routed.batches.items():
                failed = {d.key for d in batch.dead_letters}
                pending = open_keys.setdefault(key, set())
                fixed = [k for k in batch.written if k in pending and k not in failed]
                if fixed:
                    store.resolve(key, fixed)
                    pending.difference_update(fixed)
                pending.update(failed)
            yield routed

    return stage
