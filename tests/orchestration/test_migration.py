"""Zero-downtime migration on real services: v1 live under churn, v2 backfilled, validated, cut
over while a reader queries the alias, rolled back and forward, v1 retired."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from opensearchpy import OpenSearch

from catalogue.generate import churn, generate
from catalogue.versions import V1, V2
from etl_core.model.cursor import position_from_json
from etl_core.operations.lane_plan import CloseEnough
from tests.integration.test_sync import assert_parity
from tests.orchestration.conftest import Project
from tests.orchestration.test_uses import drain_catch_up

pytestmark = pytest.mark.integration


class Reader(threading.Thread):
    """Queries the read alias as fast as it can and counts what a user would have seen."""

    def __init__(self, client: OpenSearch, alias: str) -> None:
        super().__init__(daemon=True)
        self.client, self.alias = client, alias
        self.stop = threading.Event()
        self.seen: Counter[str] = Counter()
        self.indices: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                body = self.client.search(index=self.alias, body={"size": 1, "query": {"match_all": {}}})
            except Exception as exc:  # any failure a reader would have seen
                self.seen[f"error:{type(exc).__name__}"] += 1
                continue
            hits = body["hits"]["hits"]
            self.seen["ok" if hits else "empty"] += 1
            if hits:
                self.indices[hits[0]["_index"]] += 1


def catch_up_live(project: Project) -> None:
    for _ in range(10):
        requests = project.schedule_tick()
        for request in requests:
            assert project.execute(request).success
        if all(
            project.metadata(k)["lag_rows"] == 0
            for k in project.instance.get_dynamic_partitions("catalogue_versions")
            if k not in ("retired",)
        ):
            return
    raise AssertionError("live lanes did not catch up")


def test_zero_downtime_migration_end_to_end(project: Project) -> None:
    h = project.harness
    generate(h.source_engine, rows=4000, seed=41)
    v1, v2 = h.version(V1), h.version(V2)
    alias = f"{h.prefix}_products"
    # Lag counts every committed change not yet delivered (the old xmin bound hid whatever sat
    # above a long transaction): under this churn (75 changes/s, renames reaching hundreds of
    # products) a live lane is a few hundred changes behind between ticks, so "close" is 1 000.
    close = CloseEnough(timedelta(seconds=60), rows=1000)
    project.declare([v1], read_alias=alias, catch_up_pages=5, close=close)
    drain_catch_up(project)
    catch_up_live(project)
    assert all(passed for passed, _ in project.validate("v1").values())
    assert project.run_job("catalogue_cut_over", version="v1").success
    assert h.sink.alias_targets(alias) == [v1.index]
    assert project.metadata("v1")["lifecycle"] == "catching_up"  # its last run predates the swap

    # churn on the source, and v2 declared: it backfills in chunks while v1 stays fresh
    stop = threading.Event()
    done: Counter[str] = Counter()
    churner = threading.Thread(
        target=lambda: done.update(
            churn(
                h.source_engine,
                rate=25,
                seconds=600,
                seed=5,
                long_share=0.1,
                long_max_s=1.5,
                workers=3,
                stop=stop,
            )
        )
    )
    churner.start()
    try:
        project.declare([v1, v2], read_alias=alias, catch_up_pages=5, close=close)
        first = project.sensor_tick()
        assert first.run_requests is not None
        requests, merged, cursors = list(first.run_requests), False, []
        for _ in range(40):
            for request in requests:
                assert project.execute(request).success
            live_runs = 0
            for request in project.schedule_tick():
                assert project.execute(request).success
                live_runs += "v1" in request.tags["etl/lane"].split("-")
                merged |= request.tags["etl/lane"] == "v1-v2"
            meta = project.metadata("v1")
            # v1 stays fresh while v2 backfills, without a clock: every tick runs one lane with
            # v1 in it (a brand rename can make that a paged catch-up run), and its cursor never
            # moves back
            assert live_runs == 1 and meta["lifecycle"] == "live"
            cursors.append(position_from_json(meta["cursor"]))
            assert cursors == sorted(cursors), cursors
            if merged:
                break
            tick = project.sensor_tick()
            requests = list(tick.run_requests or [])
        assert merged, "v2 never caught up with the live lane"
        assert len(cursors) < 2 or cursors[-1] > cursors[0]  # v1 moved on under churn, never stalled
    finally:
        stop.set()
        churner.join()
    assert done["hard_delete"] > 0 and done["soft_delete"] > 0 and done["long_transactions"] > 0

    catch_up_live(project)
    assert_parity(h, v1, v2)  # hard deletes included, before any reconciliation
    assert project.run_job("catalogue_reconcile").success
    assert project.observation("v1")["reconcile_orphan"] == 0  # nothing left for the safety net
    assert_parity(h, v1, v2)
    checks = project.validate("v2")
    assert all(passed for passed, _ in checks.values()), checks

    reader = Reader(h.client, alias)
    reader.start()
    try:
        time.sleep(0.3)
        assert project.run_job("catalogue_cut_over", version="v2").success
        time.sleep(0.3)
        assert h.sink.alias_targets(alias) == [v2.index]
        assert project.run_job("catalogue_cut_over", version="v1").success  # rollback: v1 is still synced
        assert h.sink.alias_targets(alias) == [v1.index]
        time.sleep(0.3)
        assert project.run_job("catalogue_cut_over", version="v2").success
        time.sleep(0.3)
    finally:
        reader.stop.set()
        reader.join()
    assert set(reader.seen) == {"ok"}, reader.seen  # no error, no empty result, ever
    assert reader.seen["ok"] > 20
    assert set(reader.indices) == {v1.index, v2.index}  # it really saw both sides of the swaps
    print(
        f"v1 live runs during the v2 backfill: {len(cursors)}; churn: {dict(done)}; "
        f"reader: {dict(reader.seen)} {dict(reader.indices)}"
    )

    refused = project.run_job("catalogue_retire", version="v2", grace_hours=0)
    assert not refused.success  # v2 is live
    assert project.run_job("catalogue_retire", version="v1", grace_hours=0).success
    assert project.run_job("catalogue_reconcile").success  # deletes indices past their grace period
    assert not h.client.indices.exists(index=v1.index)
    assert [r.tags["etl/lane"] for r in project.schedule_tick()] == ["v2"]
    assert not project.run_job("catalogue_cut_over", version="v1").success
    assert_parity(h, v2)


def test_validation_fails_on_a_tampered_document_and_reconciliation_repairs_it(
    project: Project,
) -> None:
    h = project.harness
    generate(h.source_engine, rows=500, seed=42)
    v1, v2 = h.version(V1), h.version(V2)
    alias = f"{h.prefix}_products"
    project.declare([v1, v2], read_alias=alias)
    drain_catch_up(project)
    catch_up_live(project)
    assert all(passed for passed, _ in project.validate("v2").values())

    doc = h.documents(v2)["77"]
    h.client.index(index=v2.index, id="77", body={**doc, "title": "changed by hand"}, refresh=True)
    checks = project.validate("v2")
    passed, description = checks["documents_match_transform"]
    assert not passed and "1 different (first keys ['77'])" in description
    assert checks["doc_count_matches_source"][0] and checks["lag_within_threshold"][0]

    refused = project.run_job("catalogue_cut_over", version="v2")
    assert not refused.success
    error = refused.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    failure = error.message
    assert "failed validation" in failure and "['77']" in failure
    assert h.sink.alias_targets(alias) == []

    assert project.run_job("catalogue_reconcile", versions=["v2"]).success
    report = project.observation("v2")
    assert report["reconcile_different"] == 1 and report["reconcile_repaired"] == 1
    assert all(passed for passed, _ in project.validate("v2").values())
    assert project.run_job("catalogue_cut_over", version="v2").success
    assert h.sink.alias_targets(alias) == [v2.index]
    assert_parity(h, v2)
