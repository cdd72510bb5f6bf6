"""Fan-out: one page, every version in the lane. Filter by cursor and predicate, then transform.

Pure apart from serialisation: no I/O here, so adding a version adds CPU work and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns, Slots
from etl_core.model.cursor import Cursor, Position
from etl_core.model.records import Action, Change, DeadLetter, Page, RoutedPage, VersionBatch
from etl_core.model.versions import IndexVersion

R = TypeVar("R")


def _json_default(value: Any) -> Any:
    # Decimal, UUID and friends: a transform should return JSON types, but a string is a faithful
    # fallback for the few that orjson leaves out.
    return str(value)


def serialise(document: Mapping[str, Any]) -> bytes:
    """The document as the JSON bytes a ``_bulk`` body carries (no str round trip)."""
    return orjson.dumps(document, default=_json_default)


def changed_at(change: Change[Any]) -> datetime | None:
    """The change column's value, for a dead letter (a log position has none)."""
    return change.position.changed_at if isinstance(change.position, Cursor) else None


def route_page(
    page: Page[R],
    versions: Sequence[IndexVersion[R]],
    starts: Mapping[str, Position | None],
    payload_of: Callable[[R], Mapping[str, Any]],
    built: BuiltColumns = NO_BUILT_COLUMNS,
) -> RoutedPage[R]:
    """Each version gets the records strictly after its own cursor: a version that is ahead
    skips what it has already acknowledged; a record its predicate rejects becomes a delete (it may
    have matched before). A page's changes are in change order, so when its first change is
    past the version's cursor every one is, and no change is compared. A version whose document
    (or predicate) PostgreSQL built takes it from the row's built columns (``built``)."""
    batches: dict[str, VersionBatch] = {}
    first = page.changes[0].position if page.changes else None
    for version in versions:
        start = starts.get(version.key)
        if start is not None and first is not None and first > start:
            start = None  # the whole page is past the cursor
        batch = VersionBatch(version.key, starts.get(version.key))
        slots = built.slots.get(version.key)
        if slots is not None:
            _route_built(page, version, start, slots, batch, payload_of)
            batches[version.key] = batch
            continue
        append = batch.actions.append
        for change in page.changes:
            if start is not None and change.position <= start:
                continue
            doc_id, record = str(change.key), change.record
            if change.deleted or record is None or not version.wants(record):
                append(Action(version.key, version.index, "delete", doc_id, change.external, None))
                continue
            try:
                body = serialise(version.transform(record))
            except Exception as exc:  # a bad row must not stop the page: it becomes a letter
                batch.dead_letters.append(_letter(version, change, _failed(exc), payload_of))
                continue
            append(Action(version.key, version.index, "index", doc_id, change.external, body))
        batches[version.key] = batch
    return RoutedPage(page, batches)


NO_SQL_DOCUMENT = "document_sql: PostgreSQL built no document (NULL) for this row"


def _failed(exc: Exception) -> str:
    return f"transform: {type(exc).__name__}: {exc}"


def _letter(
    version: IndexVersion[R], change: Change[R], reason: str, payload_of: Callable[[R], Mapping[str, Any]]
) -> DeadLetter:
    """The dead letter of a row this version could not build a document of."""
    assert change.record is not None
    return DeadLetter(version.key, str(change.key), reason, changed_at(change), payload_of(change.record))


def _route_built(
    page: Page[R],
    version: IndexVersion[R],
    start: Position | None,
    slots: Slots,
    batch: VersionBatch,
    payload_of: Callable[[R], Mapping[str, Any]],
) -> None:
    """:func:`route_page` for a version with SQL-built columns: the document's JSON bytes as
    PostgreSQL wrote them (a NULL one is a dead letter), the predicate's boolean."""
    append = batch.actions.append
    document, predicate = slots.document, slots.predicate
    for change in page.changes:
        if start is not None and change.position <= start:
            continue
        doc_id, record = str(change.key), change.record
        if change.deleted or record is None:
            append(Action(version.key, version.index, "delete", doc_id, change.external, None))
            continue
        wanted = change.built[predicate] if predicate is not None else version.wants(record)
        if not wanted:
            append(Action(version.key, version.index, "delete", doc_id, change.external, None))
            continue
        if document is None:
            try:
                body = serialise(version.transform(record))
            except Exception as exc:
                batch.dead_letters.append(_letter(version, change, _failed(exc), payload_of))
                continue
        else:
            body = change.built[document]
            if body is None:
                batch.dead_letters.append(_letter(version, change, NO_SQL_DOCUMENT, payload_of))
                continue
        append(Action(version.key, version.index, "index", doc_id, change.external, body))


def route(
    versions: Sequence[IndexVersion[R]],
    starts: Mapping[str, Position | None],
    payload_of: Callable[[R], Mapping[str, Any]],
    built: BuiltColumns = NO_BUILT_COLUMNS,
) -> Callable[[Iterator[Page[R]]], Iterator[RoutedPage[R]]]:
    def stage(pages: Iterator[Page[R]]) -> Iterator[RoutedPage[R]]:
        for page in pages:
            yield route_page(page, versions, starts, payload_of, built)

    return stage
