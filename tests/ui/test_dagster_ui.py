"""The four uses through the real webserver and daemon: launch from the UI in a real browser,
never two syncs at once, and history read back after a restart."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import text

from etl_core.model.cursor import LogCursor
from orchestration.partitions import lane_tags
from tests.ui.conftest import PORT, DagsterDev

DEV_URL = f"http://127.0.0.1:{PORT}"

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def latest_metadata(dev: DagsterDev, partition: str) -> dict[str, object]:
    records = dev.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("catalogue_index"), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialisation of {partition}"
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def materialise_in_ui(page: Page, dev: DagsterDev, partition: str) -> None:
    page.goto(f"{dev.url}/assets/catalogue_index")
    page.get_by_role("button", name="Materialize…").wait_for()
    skip = page.get_by_role("button", name="Skip")  # a one-time "join the community" dialog
    page.wait_for_timeout(1500)
    if skip.is_visible():
        skip.click()
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.locator("[role=dialog]")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").filter(has_text=partition).first.click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the partition picker
    dialog.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text("Launched run").wait_for()


def test_launching_a_run_from_the_ui_materialises_the_partition(dagster_dev: DagsterDev) -> None:
    began = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        materialise_in_ui(page, dagster_dev, "v1")
        runs = dagster_dev.instance.get_runs()
        assert len(runs) == 1
        assert dagster_dev.wait_for_run(runs[0].run_id) == "SUCCESS"

        meta = latest_metadata(dagster_dev, "v1")
        assert meta["docs_indexed"] == 15_000 and meta["caught_up"] is True
        cursor = meta["cursor"]  # the backfill handed over to the change log at its snapshot
        assert isinstance(cursor, dict) and ":" in cursor["snapshot"] and "backfill_key" not in cursor

        page.goto(f"{dagster_dev.url}/assets/catalogue_index?view=partitions&partition=v1")
        table = page.locator("table").filter(has_text="cursor_text")
        table.wait_for()
        row = table.locator("tr").filter(has_text="cursor_text")
        assert row.inner_text().split() == ["cursor_text", "log", "at", "snapshot", cursor["snapshot"]]
        browser.close()
    print(f"browser test took {time.monotonic() - began:.1f}s")


def shown(page: Page, path: str, *texts: str, name: str) -> str:
    """Open ``path`` and wait until every text is on the page; the page's text (a screenshot in
    /tmp/ui-<name>.png when one never shows)."""
    page.goto(f"{DEV_URL}{path}")
    try:
        for text in texts:
            page.get_by_text(text, exact=True).first.wait_for(timeout=30_000)
    except Exception:
        page.screenshot(path=f"/tmp/ui-{name}.png", full_page=True)
        raise
    return page.inner_text("body")


def test_both_sources_a_versions_checks_its_freshness_and_the_observed_source(
    dagster_dev: DagsterDev,
) -> None:
    """After the first test's run (v1 and its checks, launched from the UI): what a Dagster user
    looks at, in the browser."""
    assert latest_metadata(dagster_dev, "v1")["caught_up"] is True, "runs after the first test"
    # a change that no sync applies; it waits past the warning window while we look around
    with dagster_dev.source.begin() as conn:
        conn.execute(text("UPDATE products SET name = name || ' (edited)' WHERE id = 7"))
    committed = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        # both sources of the default code location, each an index and its observed source
        shown(
            page,
            "/assets",
            "catalogue_index",
            "catalogue_source",
            "forum_index",
            "forum_source",
            name="catalog",
        )

        # the version's checks, run with its materialisation, with their results and the record's time
        checks = shown(page, "/assets/catalogue_index?view=checks", "doc_count_matches_source", name="checks")
        for check in (
            "doc_count_matches_source",
            "documents_match_transform",
            "dead_letters_within_threshold",
        ):
            assert check in checks
        assert checks.count("Succeeded") >= 5, checks
        page.get_by_text("doc_count_matches_source", exact=True).first.click()
        detail = shown(page, page.url.removeprefix(DEV_URL), "recorded_at", name="check")
        assert "This is a blocking asset check." in detail and "Partition\nv1" in detail, detail
        assert "15000 documents, source selects 15000" in detail

        # freshness: green after the sync
        shown(page, "/assets/catalogue_index", "Freshness policy", "Passing", name="fresh")

        # the change has waited longer than the warning window; observing the source judges it
        time.sleep(max(0.0, committed + 62 - time.monotonic()))
        shown(page, "/assets/catalogue_source", "Observe", name="source")
        page.get_by_role("button", name="Observe").first.click()
        page.get_by_text("Launched run").wait_for()
        observe_run = dagster_dev.instance.get_runs(limit=1)[0]
        assert dagster_dev.wait_for_run(observe_run.run_id) == "SUCCESS"
        source = shown(page, "/assets/catalogue_source", "waiting_rows", name="observed")
        assert "Never observed" not in source
        assert "freshness WARN: oldest unapplied change" in source, source
        overview = shown(page, "/assets/catalogue_index", "Freshness policy", "Warning", name="warned")
        assert "Passing" not in overview, overview
        browser.close()


def test_two_runs_never_sync_at_once(dagster_dev: DagsterDev) -> None:
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=PORT)

    def submit() -> str:
        return client.submit_job_execution(
            job_name="catalogue_sync",
            repository_location_name="search_sync",
            repository_name="__repository__",
            tags=lane_tags("catalogue", ["v2"]),
        )

    first, second = submit(), submit()

    seen_waiting = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        a = dagster_dev.instance.get_run_by_id(first)
        b = dagster_dev.instance.get_run_by_id(second)
        assert a is not None and b is not None
        running = [r for r in (a, b) if r.status == DagsterRunStatus.STARTED]
        assert len(running) <= 1, "two sync runs were running at the same time"
        if running and DagsterRunStatus.QUEUED in (a.status, b.status):
            seen_waiting = True
        if a.is_finished and b.is_finished:
            break
        time.sleep(0.1)
    assert seen_waiting, "never saw one run queued while the other ran"
    records = {
        r.dagster_run.run_id: r
        for r in dagster_dev.instance.get_run_records()
        if r.dagster_run.run_id in (first, second)
    }
    assert {r.dagster_run.status for r in records.values()} == {DagsterRunStatus.SUCCESS}
    earlier, later = sorted(records.values(), key=lambda r: r.start_time or 0)
    assert later.start_time is not None and earlier.end_time is not None
    assert later.start_time >= earlier.end_time  # the second started after the first ended
    # the second found nothing new: the first had already brought v2 up to the watermark
    assert latest_metadata(dagster_dev, "v2")["docs_indexed"] == 0


HISTORY = """
query History($partitions: [String!]) {
  runsOrError { ... on Runs { results { runId status } } }
  assetOrError(assetKey: {path: ["catalogue_index"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition runId
        metadataEntries { label ... on JsonMetadataEntry { jsonString } }
      }
    }
  }
}
"""


def test_run_history_and_cursors_survive_a_webserver_restart(dagster_dev: DagsterDev) -> None:
    before = dagster_dev.graphql(HISTORY, {"partitions": ["v1", "v2"]})
    runs_before = {r["runId"]: r["status"] for r in before["runsOrError"]["results"]}
    assert len(runs_before) >= 3 and set(runs_before.values()) == {"SUCCESS"}

    dagster_dev.stop()
    restart_s = dagster_dev.start()
    after = dagster_dev.graphql(HISTORY, {"partitions": ["v1", "v2"]})
    assert {r["runId"]: r["status"] for r in after["runsOrError"]["results"]} == runs_before
    mats = after["assetOrError"]["assetMaterializations"]
    assert mats == before["assetOrError"]["assetMaterializations"]
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for m in mats:
        by_partition.setdefault(m["partition"], []).append(m)
    assert set(by_partition) == {"v1", "v2"} and len(by_partition["v2"]) == 2
    for partition, history in by_partition.items():
        cursors = [e["jsonString"] for m in history for e in m["metadataEntries"] if e["label"] == "cursor"]
        # every run read the whole source and handed over to the change log: each materialisation
        # holds a change-log position (a snapshot, which moves on with the server even when this
        # source did not change), none of them a backfill's
        positions = [LogCursor.from_json(orjson.loads(c)) for c in cursors]
        assert len(cursors) == len(history) and not any(p.backfilling for p in positions), partition
    print(f"webserver restart took {restart_s:.1f}s")
