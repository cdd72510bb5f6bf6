"""Compare every version's index with its transform of the source, and optionally repair it.

Two streamed walks, constant memory, whatever the table size:

* source → index: keyset pages of the source (one query a page for *all* versions, as in a sync),
  each version fetching just that page's ids (``_mget``): missing, different and unexpected
  (soft-deleted, or rejected by the predicate) documents;
* index → source: every id of the index through a scroll in ``_doc`` order (no sort on ``_id``),
  checked in batches against the source (``key IN (...)``): orphans, i.e. hard-deleted rows.

Repairs go through the normal write path but overwrite unconditionally (internal versioning): a
document altered or deleted behind the pipeline's back carries a version the change column cannot
beat. Run it where syncs cannot race it (the orchestration runs it in the sync pool); the content it
writes is the source's current row, so a later sync's external version still moves it forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from etl_core.flow.route import route_page
from etl_core.logs import event
from etl_core.model.cursor import Cursor
from etl_core.model.protocols import DeadLetterStore, SearchIndex
from etl_core.model.records import Action, Outcome, RoutedPage, VersionBatch
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion
from etl_core.read.extract import Extractor
from etl_core.write.load import load, park_dead_letters

R = TypeVar("R")
EXAMPLES = 5


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
    dead_lettered: int = 0
    """Rows whose key has an open dead letter: the letter accounts for them, not ``expected``."""
    lettered_indexed: int = 0
    """Of those, the ones with a (previous) document still in the index."""

    @property
    def count_matches(self) -> bool:
        return self.indexed == self.expected + self.lettered_indexed

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
            lettered = (
                f", plus {self.lettered_indexed} older documents of the {self.dead_lettered} rows with "
                "an open dead letter (replay them)"
                if self.dead_lettered
                else ""
            )
            return f"{self.version}: {self.indexed} documents; {self.expected} equal the source{lettered}"
        parts = [
            f"{n} {kind} (first keys {self.examples.get(kind, [])})" for kind, n in self.counts.items() if n
        ]
        return f"{self.version}: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """Every count that explains the totals: documents = source rows + older documents of
        dead-lettered rows, when nothing differs."""
        return {
            "summary": self.describe(),
            **self.counts,
            "documents": self.indexed,
            "source_rows": self.expected,
            "dead_lettered": self.dead_lettered,
            "dead_lettered_indexed": self.lettered_indexed,
            "untransformable": self.untransformable,
            "repaired": self.repaired,
        }


def reconcile(
    versions: Sequence[IndexVersion[R]],
    extractor: Extractor[R],
    index: SearchIndex,
    *,
    repair: bool,
    dead_letters: DeadLetterStore,
) -> dict[str, Drift]:
    """What a version expects is what a sync would send (``route_page``, the same rule), so
    the two cannot disagree. A key with an open dead letter is counted as ``dead_lettered``, not
    missing, and is not re-sent: its letter says why, and replay is the way to retry it. A
    repair that fails again becomes (or refreshes) that key's dead letter, and with ``repair`` a
    row whose transform fails (changed where no sync saw it) becomes one too."""
    source = extractor.source
    drifts = {v.key: Drift(v.key) for v in versions}
    open_keys = dead_letters.open_keys(v.key for v in versions)
    lettered = {v.key: open_keys.get(v.key, set()) for v in versions}
    nobody: dict[str, Cursor | None] = {v.key: None for v in versions}

    for page in extractor.walk():
        ids = [str(c.key) for c in page.changes]
        routed = route_page(page, versions, nobody, source.record_to_json)
        for version in versions:
            drift, fixes = drifts[version.key], []
            batch = routed.batches[version.key]
            open_letters = lettered[version.key]
            drift.untransformable += len(batch.dead_letters)  # the dead-letter check counts them
            unrecorded = [d for d in batch.dead_letters if d.key not in open_letters]
            if repair and unrecorded:  # a row changed behind the pipeline's back that fails now
                dead_letters.put(unrecorded)
                open_letters.update(d.key for d in unrecorded)
            found = index.fetch(version.index, ids)
            for action in batch.actions:
                have = found.get(action.id)
                if action.op == "delete":
                    if have is not None:
                        drift.note("unexpected", action.id)
                        fixes.append(action._replace(external_version=None))
                    continue
                if action.id in open_letters:
                    drift.dead_lettered += 1
                    drift.lettered_indexed += have is not None
                    continue
                drift.expected += 1
                assert action.body is not None
                if have is None:
                    drift.note("missing", action.id)
                elif have[1] != orjson.loads(action.body):
                    drift.note("different", action.id)
                else:
                    continue
                fixes.append(action._replace(external_version=None))
            if repair and fixes:
                drift.repaired += _repair(routed, version.key, fixes, index, dead_letters, source)

    for version in versions:
        drift = drifts[version.key]
        for batch_ids in index.scan_ids(version.index):
            drift.indexed += len(batch_ids)
            keys = [source.key_from_id(doc_id) for doc_id, _ in batch_ids]
            existing = {str(k) for k in extractor.existing(keys)}
            orphans = [(doc_id, v) for doc_id, v in batch_ids if doc_id not in existing]
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
            dead_lettered=drift.dead_lettered,
            **drift.counts,
        )
    return drifts


def _repair(
    routed: RoutedPage[R],
    version: str,
    fixes: list[Action],
    index: SearchIndex,
    dead_letters: DeadLetterStore,
    source: Source[R],
) -> int:
    """Write ``fixes`` through the normal load stage, so a refusal is parked as a letter."""
    batch = VersionBatch(version, None, actions=fixes)
    page = RoutedPage(routed.page, {version: batch})
    for done in park_dead_letters(dead_letters)(load(index, source.record_to_json)(iter([page]))):
        written = done.batches[version]
    return written.indexed + written.deleted


def _applied(outcomes: list[Outcome]) -> int:
    return sum(o.status in ("indexed", "deleted") for o in outcomes)
