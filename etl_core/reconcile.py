"""Compare every version's index with its transform of the source, and optionally repair it.

Two streamed walks, constant memory, whatever the table size:

* source → index: keyset pages of the source (one query a page for *all* versions, as in a sync),
  each version fetching just that page's ids (``_mget``): missing, different and unexpected
  (soft-deleted, or rejected by the predicate) documents;
* index → source: every id of the index through a point in time and ``search_after``, checked in
  batches against the source (``key IN (...)``): orphans, i.e. hard-deleted rows.

Repairs go through the normal write path but overwrite unconditionally (internal versioning): a
document altered or deleted behind the pipeline's back carries a version the change column cannot
beat. Run it where syncs cannot race it (the orchestration runs it in the sync pool); the content it
writes is the source's current row, so a later sync's external version still moves it forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import orjson

from etl_core.extract import Extractor, normalise
from etl_core.logs import event
from etl_core.model import Action, Outcome
from etl_core.protocols import SearchIndex
from etl_core.route import serialise
from etl_core.versions import IndexVersion

R = TypeVar("R")
EXAMPLES = 5
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Drift:
    """What differs between one version's index and its transform of the source."""

    version: str
    expected: int = 0
    indexed: int = 0
    untransformable: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"missing": 0, "different": 0, "unexpected": 0, "orphan": 0}
    )
    examples: dict[str, list[str]] = field(default_factory=dict)
    repaired: int = 0

    def note(self, kind: str, key: str) -> None:
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES:
            shown.append(key)

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.differences == 0

    def describe(self) -> str:
        if self.ok:
            return f"{self.version}: {self.indexed} documents equal the source's {self.expected}"
        parts = [
            f"{n} {kind} (first keys {self.examples.get(kind, [])})" for kind, n in self.counts.items() if n
        ]
        return f"{self.version}: " + "; ".join(parts)


def reconcile(
    versions: Sequence[IndexVersion[R]],
    extractor: Extractor[R],
    index: SearchIndex,
    *,
    repair: bool,
) -> dict[str, Drift]:
    source = extractor.source
    drifts = {v.key: Drift(v.key) for v in versions}

    for page in normalise(source, extractor.pages(None, _FAR_FUTURE)):
        ids = [str(c.position.key) for c in page.changes]
        for version in versions:
            drift, fixes = drifts[version.key], []
            found = index.fetch(version.index, ids)
            for doc_id, change in zip(ids, page.changes, strict=True):
                have = found.get(doc_id)
                if change.deleted or not version.wants(change.record):
                    if have is not None:
                        drift.note("unexpected", doc_id)
                        fixes.append(Action(version.key, version.index, "delete", doc_id, None, None))
                    continue
                try:
                    body = serialise(version.transform(change.record))
                except Exception:
                    drift.untransformable += 1  # a dead letter: the dead-letter check counts it
                    continue
                drift.expected += 1
                if have is None:
                    drift.note("missing", doc_id)
                elif have[1] != orjson.loads(body):
                    drift.note("different", doc_id)
                else:
                    continue
                fixes.append(Action(version.key, version.index, "index", doc_id, None, body))
            if repair and fixes:
                drift.repaired += _applied(index.write(fixes))

    for version in versions:
        drift = drifts[version.key]
        for batch in index.scan_ids(version.index):
            drift.indexed += len(batch)
            keys = [source.key_from_id(doc_id) for doc_id, _ in batch]
            existing = {str(k) for k in extractor.existing(keys)}
            orphans = [(doc_id, v) for doc_id, v in batch if doc_id not in existing]
            for doc_id, _ in orphans:
                drift.note("orphan", doc_id)
            if repair and orphans:
                actions = [
                    Action(version.key, version.index, "delete", doc_id, v, None) for doc_id, v in orphans
                ]
                drift.repaired += _applied(index.write(actions))
        event(
            "reconciled",
            version=version.key,
            expected=drift.expected,
            indexed=drift.indexed,
            repaired=drift.repaired,
            **drift.counts,
        )
    return drifts


def _applied(outcomes: list[Outcome]) -> int:
    return sum(o.status in ("indexed", "deleted") for o in outcomes)
