"""Nothing is lost: outages, 429 storms, killed connections, out-of-order commits, churn, bad rows
and bad configuration, each ending in an exact comparison of every document with the source."""

from __future__ import annotations

import logging
import random
import subprocess
import threading
import time
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import Engine, text

from catalogue.generate import churn, generate
from catalogue.source import CATALOGUE
from catalogue.versions import V1, V2, V3
from etl_core import ConfigError, IndexVersion, OpenSearchSink, SourceUnavailable, make_client
from etl_core.operations.reconcile import reconcile
from etl_core.read.extract import Extractor
from etl_core.retry import Backoff
from etl_core.settings import Settings, make_engine
from tests.conftest import ROOT
from tests.faults.proxy import FaultProxy
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration
PATIENT = Backoff(attempts=10, initial=0.5, maximum=8.0)  # about 45 s of retries in all


def opensearch(action: str) -> None:
    subprocess.run(
        [ROOT / "scripts" / "services.sh", f"{action}-opensearch"], check=True, capture_output=True
    )


def test_opensearch_stopped_mid_run_is_survived_with_backoff(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.INFO, logger="etl_core")
    generate(h.source_engine, rows=1500, seed=51)
    versions = [h.version(V1), h.version(V2)]
    sink = OpenSearchSink(h.client, backoff=PATIENT)
    outage: dict[str, float] = {}

    def restart_later() -> None:
        time.sleep(3)
        opensearch("start")  # returns once the node is healthy again
        outage["s"] = time.monotonic() - outage["began"]

    restarter = threading.Thread(target=restart_later)

    def on_page(progress: Any) -> None:
        if progress.number == 2:
            outage["began"] = time.monotonic()
            opensearch("stop")
            outage["down"] = float(subprocess.run([ROOT / "scripts" / "services.sh", "status"]).returncode)
            restarter.start()

    try:
        result = h.sync(versions, sink=sink, on_page=on_page)
    finally:
        if restarter.is_alive() or "began" in outage:
            restarter.join()
        opensearch("start")
    # the walk, the hand-over to the log, then its first batch (nothing committed since: no write)
    assert result.rows_read == 1500 and result.pages == 8 + 2
    # the node really was down, and the sink waited for it rather than failing (no clock involved)
    assert outage["down"] == 1.0
    assert any(r.getMessage().startswith("sink_retry ") for r in caplog.records)
    print(f"outage survived: {outage['s']:.1f}s")
    assert_parity(h, *versions)


def test_opensearch_down_past_the_retry_budget_fails_cleanly_then_recovers(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=600, seed=52)
    versions = [h.version(V1), h.version(V3)]
    h.sync(versions)  # indices exist; now more changes arrive while the node is down
    before = h.cursors.load(v.key for v in versions)
    execute(h, "UPDATE products SET stock = stock + 1 WHERE id % 3 = 0")
    opensearch("stop")
    try:
        # the node is stopped: the call is named and the cause is a refused connection
        with pytest.raises(
            Exception, match=r"could not be reached while .* \(3 attempts: [a-z ]+\)\..*no cursor was moved"
        ):
            h.sync(versions)
        assert h.cursors.load(v.key for v in versions) == before
    finally:
        opensearch("start")
    result = h.sync(versions)
    assert result.versions["v1"].indexed == 200
    assert_parity(h, *versions)


def test_429_storms_back_off_and_lose_nothing(harness: Harness, settings: Settings) -> None:
    h = harness
    generate(h.source_engine, rows=1000, seed=53)
    versions = [h.version(V1), h.version(V2), h.version(V3)]
    with FaultProxy(settings.opensearch_url) as proxy:
        sink = OpenSearchSink(make_client(proxy.url), backoff=PATIENT)
        for v in versions:
            sink.ensure_index(v)
        proxy.reject_requests = 4  # whole _bulk requests answered 429 ...
        proxy.reject_items = 4  # ... then every item of the next ones
        result = h.sync(versions, sink=sink)
    assert proxy.served_429 == 8
    assert result.rows_read == 1000 and not h.dead_letters.open_letters()
    assert_parity(h, *versions)


def test_postgres_connections_killed_mid_extraction(harness: Harness, admin_engine: Engine) -> None:
    h = harness
    generate(h.source_engine, rows=1200, seed=54)
    versions = [h.version(V1), h.version(V2)]
    db = h.source_engine.url.database
    killed: list[int] = []

    def on_page(progress: Any) -> None:
        if progress.number in (2, 4):
            with admin_engine.connect() as conn:
                killed.extend(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": db},
                    ).scalars()
                )

    result = h.sync(versions, on_page=on_page)
    assert len(killed) >= 2 and all(killed)
    assert result.rows_read == 1200  # nothing read twice, nothing skipped
    assert_parity(h, *versions)

    dead = make_engine(h.source_engine.url.set(port=1))
    quick = Backoff(attempts=3, initial=0.05, maximum=0.1)
    cursors = h.cursors.load(v.key for v in versions)
    with pytest.raises(SourceUnavailable) as failure:
        h.sync(versions, extractor=Extractor(dead, CATALOGUE, backoff=quick))
    message = str(failure.value)
    assert "after 3 attempts" in message and "SOURCE_DATABASE_URL" in message
    password = h.source_engine.url.password
    assert password is not None and password not in message
    assert h.cursors.load(v.key for v in versions) == cursors


def test_out_of_order_commits_lose_no_update(harness: Harness) -> None:
    """Writers hold transactions up to 2.5 s and commit out of order while syncs run."""
    h = harness
    generate(h.source_engine, rows=800, seed=55)
    versions = [h.version(V1), h.version(V3)]
    h.sync(versions)
    commits: list[tuple[float, Any]] = []  # (commit time, stamp)
    lock = threading.Lock()
    deadline = time.monotonic() + 8

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            with h.source_engine.connect() as conn:
                tx = conn.begin()
                # the transaction id: the order transactions began in, which is what commits invert
                stamp = conn.execute(
                    text(
                        "UPDATE products SET price_cents = :p, stock = :s WHERE id = :id "
                        "RETURNING pg_current_xact_id()::text::bigint"
                    ),
                    {"p": rng.randint(1, 9999), "s": rng.randint(0, 9), "id": rng.randint(1, 800)},
                ).scalar_one()
                time.sleep(rng.uniform(0, 2.5))
                tx.commit()
                with lock:
                    commits.append((time.monotonic(), stamp))

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for w in writers:
        w.start()
    syncs = 0
    while any(w.is_alive() for w in writers):
        h.sync(versions)
        syncs += 1
        time.sleep(0.2)
    for w in writers:
        w.join()
    h.sync(versions)
    ordered = sorted(commits)
    inversions = sum(1 for (_, a), (_, b) in pairwise(ordered) if b < a)
    assert inversions > 0 and syncs > 5  # stamps really committed out of order, during syncs
    print(f"out-of-order: {len(commits)} commits, {inversions} inversions, {syncs} syncs")
    assert_parity(h, *versions)


def test_churn_with_hard_and_soft_deletes_ends_in_parity_without_reconciliation(
    harness: Harness,
) -> None:
    h = harness
    generate(h.source_engine, rows=1500, seed=56)
    versions = h.versions
    stop = threading.Event()
    done: Counter[str] = Counter()
    churner = threading.Thread(
        target=lambda: done.update(
            churn(h.source_engine, rate=40, seconds=8, seed=9, long_share=0.1, long_max_s=1.0, stop=stop)
        )
    )
    churner.start()
    while churner.is_alive():
        h.sync(versions)
        time.sleep(0.2)
    h.sync(versions)
    assert done["hard_delete"] > 0 and done["soft_delete"] > 0
    assert_parity(h, *versions)  # hard deletes arrive through the change log, at the next sync
    drift = reconcile(versions, h.extractor(), h.sink, repair=False, dead_letters=h.dead_letters)
    assert all(d.ok for d in drift.values()), [d.describe() for d in drift.values()]


def test_bad_rows_become_dead_letters_with_reasons(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=300, seed=57)
    execute(h, "UPDATE products SET name = NULL WHERE id = 10")  # a required field is NULL
    execute(h, "INSERT INTO brands (name) VALUES (repeat('x', 40000))")  # an immense keyword
    execute(h, "UPDATE products SET brand_id = (SELECT max(id) FROM brands) WHERE id = 11")
    execute(h, "UPDATE products SET stock = 70000 WHERE id = 12")  # v2's short rejects it
    execute(h, "UPDATE products SET description = repeat('long text ', 50000) WHERE id = 13")
    versions = h.versions
    result = h.sync(versions)
    letters = {(d["version"], d["key"]): d["reason"] for d in h.dead_letters.open_letters()}
    for key in ("v1", "v2", "v3"):
        assert letters[(key, "10")].startswith("transform: MissingField: name is NULL")
        assert "immense term" in letters[(key, "11")] or "max_bytes" in letters[(key, "11")]
    assert "mapper_parsing_exception" in letters[("v2", "12")]
    assert set(letters) == {(v, k) for v in ("v1", "v2", "v3") for k in ("10", "11")} | {("v2", "12")}
    cursors = {t.cursor for t in result.versions.values()}  # all through the source, to the log
    assert result.caught_up and len(cursors) == 1 and not cursors.pop().backfilling  # type: ignore[union-attr]
    for v in versions:  # every other document is there and exact, the huge text included
        docs, expected = h.documents(v), h.expected(v)
        bad = {k for (ver, k) in letters if ver == v.key}
        assert docs == {k: d for k, d in expected.items() if k not in bad}
    assert len(h.documents(versions[0])["13"]["description"]) == 500_000


def test_bad_configuration_fails_before_any_document_is_written(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=100, seed=58)
    broken = IndexVersion(
        "v9", f"{h.prefix}_v9", V1.transform, mappings={"properties": {"sku": {"type": "no_such_type"}}}
    )
    with pytest.raises(ConfigError, match=r"version 'v9': OpenSearch refused index .*no_such_type"):
        h.sync([h.version(V1), broken])
    assert h.cursors.load(["v1", "v9"]) == {"v1": None, "v9": None}
    assert not h.client.indices.exists(index=h.version(V1).index)  # all or none
