"""Reconciliation, validation, cut-over, rollback, retirement and dead-letter replay (core)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from catalogue.generate import generate
from catalogue.source import Product
from catalogue.versions import V1, V2
from etl_core import IndexVersion
from etl_core.operations.lifecycle import LifecycleRefused, MigrationRecords, cut_over, delete_expired, retire
from etl_core.operations.reconcile import reconcile
from etl_core.operations.replay import replay_dead_letters
from etl_core.operations.validation import ValidationReport, validate
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity, behind_capture, execute

pytestmark = pytest.mark.integration


def test_reconciliation_finds_and_repairs_every_kind_of_drift(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=600, seed=31)
    v1, v2 = versions = [h.version(V1), h.version(V2)]
    h.sync(versions)
    behind_capture(h, "DELETE FROM products WHERE id IN (5, 6, 7)")  # the sync cannot see these
    h.client.index(index=v2.index, id="10", body={**h.documents(v2)["10"], "title": "tampered"})
    h.client.delete(index=v1.index, id="11")
    soft = h.documents(v1)["12"]
    execute(h, "UPDATE products SET deleted_at = now() WHERE id = 12")
    h.sync(versions)
    h.client.index(index=v1.index, id="12", body=soft)  # a deleted row's document come back
    h.client.indices.refresh(index=f"{v1.index},{v2.index}")

    found = reconcile(versions, h.extractor(), h.sink, repair=False, dead_letters=h.dead_letters)
    assert found["v1"].counts == {"missing": 1, "different": 0, "unexpected": 1, "orphan": 3}
    assert found["v1"].examples == {"missing": ["11"], "unexpected": ["12"], "orphan": ["5", "6", "7"]}
    assert found["v2"].counts == {"missing": 0, "different": 1, "unexpected": 0, "orphan": 3}
    assert "1 different (first keys ['10'])" in found["v2"].describe()

    h.statements.clear()
    repaired = reconcile(versions, h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)
    assert repaired["v1"].repaired == 5 and repaired["v2"].repaired == 4
    pages = [s for s in h.selects() if "LIMIT" in s]
    assert len(pages) == math.ceil(597 / h.page_size)  # one source walk for both versions
    assert_parity(h, *versions)
    again = reconcile(versions, h.extractor(), h.sink, repair=False, dead_letters=h.dead_letters)
    assert all(d.ok and d.indexed == d.expected for d in again.values())


def test_validation_gates_the_cut_over_and_rollback_and_retirement_follow(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=400, seed=32)
    v1, v2 = h.version(V1), h.version(V2)
    alias = f"{h.prefix}_products"
    life = MigrationRecords(h.state)
    h.sync([v1, v2])

    def check(v: IndexVersion[Product]) -> ValidationReport:
        report = validate(
            v, extractor=h.extractor(), sink=h.sink, dead_letters=h.dead_letters, cursors=h.cursors
        )
        life.record(report)
        return report

    with pytest.raises(LifecycleRefused, match="never been validated"):
        cut_over(life, v2, alias, h.sink)
    assert check(v1).passed
    cut_over(life, v1, alias, h.sink)
    assert h.sink.alias_targets(alias) == [v1.index]

    doc = h.documents(v2)["42"]
    h.client.index(index=v2.index, id="42", body={**doc, "stock": doc["stock"] + 1}, refresh=True)
    report = check(v2)
    assert not report.passed
    failed = {c.name: c for c in report.checks if not c.passed}
    assert set(failed) == {"documents_match_transform"}
    assert "first keys ['42']" in failed["documents_match_transform"].description
    with pytest.raises(LifecycleRefused, match=r"failed validation.*first keys \['42'\]"):
        cut_over(life, v2, alias, h.sink)
    assert h.sink.alias_targets(alias) == [v1.index]

    reconcile([v2], h.extractor(), h.sink, repair=True, dead_letters=h.dead_letters)
    execute(h, "UPDATE products SET price_cents = 1 WHERE id = 3")
    lagging = check(v2)
    # the change is not synced yet: behind the source, and document 3 differs from its transform
    assert {c.name for c in lagging.checks if not c.passed} == {
        "lag_within_threshold",
        "documents_match_transform",
    }
    h.sync([v1, v2])
    assert check(v2).passed
    assert cut_over(life, v2, alias, h.sink) == [v1.index]
    assert h.sink.alias_targets(alias) == [v2.index]
    hits = h.client.search(index=alias, body={"query": {"ids": {"values": ["3"]}}})["hits"]
    assert hits["hits"][0]["_source"]["price"]["amount"] == 0.01

    cut_over(life, v1, alias, h.sink)  # rollback: v1 is still synced and validated
    assert h.sink.alias_targets(alias) == [v1.index]
    cut_over(life, v2, alias, h.sink)

    with pytest.raises(LifecycleRefused, match="is live behind alias"):
        retire(life, v2, alias, h.sink, timedelta(0))
    retire(life, v1, alias, h.sink, timedelta(hours=1))
    assert life.retired() == {"v1"}
    assert delete_expired(life, h.sink) == []  # still in its grace period
    with pytest.raises(LifecycleRefused, match="retired"):
        cut_over(life, v1, alias, h.sink)
    with h.state.engine.begin() as conn:
        conn.execute(h.state.retirements.update().values(delete_after=h.state.retirements.c.retired_at))
    assert delete_expired(life, h.sink) == [v1.index]
    assert not h.client.indices.exists(index=v1.index)


def test_replaying_dead_letters_resolves_fixed_rows_and_keeps_the_rest(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=200, seed=33)
    v2 = h.version(V2)
    execute(h, "UPDATE products SET stock = 40000 WHERE id IN (20, 21, 22)")  # v2's short refuses
    h.sync([v2])
    assert {d["key"] for d in h.dead_letters.open_letters("v2")} == {"20", "21", "22"}

    # fix one row without touching updated_at's order; another is hard-deleted; one stays bad
    execute(h, "UPDATE products SET stock = 12 WHERE id = 20")
    execute(h, "DELETE FROM products WHERE id = 21")
    result = replay_dead_letters([v2], extractor=h.extractor(), sink=h.sink, dead_letters=h.dead_letters)[
        "v2"
    ]
    assert (result.resolved, result.gone, result.still_failing) == (1, 1, 1)
    still = h.dead_letters.open_letters("v2")
    assert [(d["key"], d["attempts"]) for d in still] == [("22", 2)]
    assert "mapper_parsing_exception" in still[0]["reason"]
    assert h.documents(v2)["20"]["stock"] == 12


def test_replay_in_change_column_mode_resolves_the_letters_of_vanished_rows(by_column: Harness) -> None:
    """Every lettered row gone: the replay reads an empty page (no row to normalise) and resolves."""
    h = by_column
    generate(h.source_engine, rows=100, seed=34)
    v2 = h.version(V2)
    execute(h, "UPDATE products SET stock = 40000 WHERE id IN (20, 21)")  # v2's short refuses
    h.sync([v2])
    assert {d["key"] for d in h.dead_letters.open_letters("v2")} == {"20", "21"}
    execute(h, "DELETE FROM products WHERE id IN (20, 21)")
    result = replay_dead_letters([v2], extractor=h.extractor(), sink=h.sink, dead_letters=h.dead_letters)
    assert (result["v2"].gone, result["v2"].resolved, result["v2"].still_failing) == (2, 0, 0)
    assert h.dead_letters.open_letters("v2") == []
