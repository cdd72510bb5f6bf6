"""``python -m benchmarks.shards --rows N``: a sharded backfill of one version on Dagster's
multiprocess executor, K = 1, 2, 4, side by side on the same data and node.

Each run is the real ``catalogue_backfill`` job (plan, K ``walk_shard`` steps in processes of
their own, hand-over) on a persistent Dagster instance, into a fresh index and a fresh state
schema; ``parity_ok`` compares every document with the version's transform of its row. The
"null sink" runs build and serialise every document of K shards in K processes but send nothing:
how the Python side scales with K where a 2-core node cannot. The last line is one JSON object.

The celery run sends the same job's steps to two ``dagster-celery`` workers (one step at a
time each) through the local Redis (``scripts/services.sh up`` starts it).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from dagster import DagsterInstance, JobDefinition, execute_job, reconstructable
from opensearchpy import helpers
from sqlalchemy import select, text

from benchmarks.run import log, prepare_database
from catalogue.source import CATALOGUE, Product
from catalogue.versions import V1
from etl_core.flow.shards import ShardPlan, plan_shards, sync_shard
from etl_core.model.records import Action, Outcome
from etl_core.operations.connect import Connections
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import OpenSearchSink, request_body
from orchestration.project import build_definitions
from orchestration.resources import SyncServices

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_shards"


def version(tag: str) -> Any:
    return dataclasses.replace(V1, index=f"bench-shards-{tag}-{V1.index}")


def bench_backfill_job() -> JobDefinition:
    """The job each step process rebuilds from the environment (reconstructable)."""
    return _job(celery=False)


def bench_backfill_job_celery() -> JobDefinition:
    """The same on the celery executor (a pointer of its own: Dagster caches what one loads)."""
    return _job(celery=True)


def _job(*, celery: bool) -> JobDefinition:
    engine = SyncServices(
        source_database_url=os.environ["BENCH_SHARDS_SOURCE_URL"],
        opensearch_url=os.environ["OPENSEARCH_URL"],
        etl_state_schema=os.environ["BENCH_SHARDS_SCHEMA"],
    )
    executor = None
    if celery:
        from dagster_celery import celery_executor

        executor = celery_executor
    defs = build_definitions(
        CATALOGUE,
        [version(os.environ["BENCH_SHARDS_TAG"])],
        sync_services=engine,
        automation=False,
        backfill_executor=executor,
    )
    return defs.resolve_job_def("catalogue_backfill")


class CeleryWorkers:
    """Two celery workers (``scripts/serve.sh celery-worker``, one step at a time each) for as
    long as the block runs; they rebuild jobs from the environment as it is when they start.
    The browser-free celery test uses it too."""

    def __init__(self, broker: str, logs: Path, count: int = 2) -> None:
        self.config = {"broker": broker, "backend": broker}
        self.logs = [logs / f"celery-worker{i}.log" for i in range(1, count + 1)]
        self.workers: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> CeleryWorkers:
        for i, log_path in enumerate(self.logs, 1):
            env = {
                **os.environ,
                "CELERY_BROKER_URL": self.config["broker"],
                "WORKER_NAME": f"etl-{i}-{uuid.uuid4().hex[:6]}",
            }
            self.workers.append(
                subprocess.Popen(
                    [str(ROOT / "scripts" / "serve.sh"), "celery-worker"],
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                    stdout=log_path.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        for _ in range(600):  # until each says it is ready (celery's own "ready." line)
            if any(w.poll() is not None for w in self.workers):
                break
            if all("ready." in p.read_text() for p in self.logs):
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"celery workers did not start: {[p.read_text()[-1500:] for p in self.logs]}")

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in self.workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait()


class RssSampler:
    """The peak of the summed RSS of this process's descendants (the step processes)."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.2):
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                parents[int(entry.name)] = int(fields.get("PPid", "0").strip())
                rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0] or 0)
            total = 0
            for pid in rss:
                p = pid
                while p and p != me:
                    p = parents.get(p, 0)
                if p == me and pid != me:
                    total += rss[pid]
            self.peak_kb = max(self.peak_kb, total)


def parity(conns: Connections, v: Any) -> bool:
    """Every document equals the transform of its row (and no document is missing or extra)."""
    sub = CATALOGUE.selectable.subquery()
    expected: dict[str, Any] = {}
    with conns.source_engine.connect() as conn:
        for row in conn.execute(select(*(sub.c[f] for f in CATALOGUE.fields))):
            record = Product(*row)
            if record.deleted_at is None and v.wants(record):
                try:
                    expected[str(record.id)] = orjson.loads(orjson.dumps(v.transform(record)))
                except ValueError:
                    continue  # a dead letter
    conns.client.indices.refresh(index=v.index)
    actual = {
        h["_id"]: h["_source"]
        for h in helpers.scan(conns.client, index=v.index, query={"query": {"match_all": {}}})
    }
    return actual == expected


class NullSink(OpenSearchSink):
    """Builds every ``_bulk`` body as the real sink does, and sends none of them."""

    def _send(self, chunk: list[tuple[Action, bytes | None]]) -> list[Outcome | int]:
        request_body(chunk)
        return [Outcome(a, "deleted" if a.op == "delete" else "indexed") for a, _ in chunk]


def _null_shard(args: tuple[dict[str, Any], int, str, str]) -> int:
    plan_json, number, tag, schema = args
    url = os.environ["BENCH_SHARDS_SOURCE_URL"]
    env = {**os.environ, "SOURCE_DATABASE_URL": url, "STATE_DATABASE_URL": url}
    settings = dataclasses.replace(Settings.from_env(env), state_schema=schema)
    conns = Connections(settings, CATALOGUE.name)
    try:
        conns.state.create()
        plan = ShardPlan.from_json(plan_json)
        sink = NullSink(conns.client)
        result = sync_shard(
            [version(tag)],
            plan.shards[number - 1],
            extractor=conns.extractor(CATALOGUE),
            sink=sink,
            dead_letters=conns.dead_letters,
            cursors=conns.cursors,
        )
        return result.rows_read
    finally:
        conns.close()


def null_sink(settings: Settings, k: int) -> float:
    tag, schema = f"null{k}-{uuid.uuid4().hex[:6]}", f"etl_bench_null_{uuid.uuid4().hex[:8]}"
    conns = Connections(dataclasses.replace(settings, state_schema=schema), CATALOGUE.name)
    try:
        conns.state.create()
        plan = plan_shards([version(tag)], k, extractor=conns.extractor(CATALOGUE), sink=conns.sink)
        began = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(k) as pool:
            rows = sum(pool.map(_null_shard, [(plan.to_json(), s.number, tag, schema) for s in plan.shards]))
        seconds = time.perf_counter() - began
        conns.client.indices.delete(index=version(tag).index, ignore_unavailable=True)
        with conns.state_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        return rows / seconds
    finally:
        conns.close()


def dagster_home(settings: Settings) -> Path:
    admin = make_engine(settings.source_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS bench_shards_dagster WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE bench_shards_dagster"))
    admin.dispose()
    home = Path(tempfile.mkdtemp(prefix="bench-shards-home-"))
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"], os.environ["DAGSTER_PG_DB"] = str(home), "bench_shards_dagster"
    return home


def fresh_names(label: str) -> None:
    """A new index and state schema for the next run, in the environment the steps read."""
    os.environ["BENCH_SHARDS_TAG"] = f"{label}-{uuid.uuid4().hex[:6]}"
    os.environ["BENCH_SHARDS_SCHEMA"] = f"etl_bench_{uuid.uuid4().hex[:8]}"


def run_k(
    instance: DagsterInstance, settings: Settings, k: int, rows: int, celery: dict[str, str] | None = None
) -> dict[str, Any]:
    tag, schema = os.environ["BENCH_SHARDS_TAG"], os.environ["BENCH_SHARDS_SCHEMA"]
    run_config: dict[str, Any] = {
        "ops": {"catalogue_plan_shards": {"config": {"versions": ["v1"], "shards": k}}}
    }
    if celery is not None:
        run_config["execution"] = {"config": celery}
    began = time.perf_counter()
    with (
        RssSampler() as rss,
        execute_job(
            reconstructable(bench_backfill_job_celery if celery else bench_backfill_job),
            instance=instance,
            run_config=run_config,
        ) as result,
    ):
        ok = result.success
    wall = time.perf_counter() - began
    conns = Connections(dataclasses.replace(settings, state_schema=schema), CATALOGUE.name)
    try:
        same = ok and parity(conns, version(tag))
        conns.client.indices.delete(index=version(tag).index, ignore_unavailable=True)
        with conns.state_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        conns.close()
    return {
        "executor": "celery" if celery is not None else "multiprocess",
        "k": k,
        "wall_s": round(wall, 2),
        "docs_per_s": round(rows / wall),
        "peak_rss_mb": round(rss.peak_kb / 1024, 1),
        "parity_ok": same,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ks", default="1,2,4", help="shard counts to measure (multiprocess)")
    parser.add_argument("--no-celery", dest="celery", action="store_false", help="skip the celery run")
    args = parser.parse_args(argv)
    settings = prepare_database(Settings.from_env(), args.rows, args.seed, DATABASE)
    os.environ["BENCH_SHARDS_SOURCE_URL"] = settings.source_url.render_as_string(hide_password=False)
    home = dagster_home(settings)
    runs = []
    try:
        with DagsterInstance.get() as instance:
            for k in (int(x) for x in args.ks.split(",")):
                log(f"multiprocess executor, k={k}")
                fresh_names(f"k{k}")
                run = run_k(instance, settings, k, args.rows)
                run["null_sink_docs_per_s"] = round(null_sink(settings, k))
                log(str(run))
                runs.append(run)
            if args.celery:
                log("celery executor, two workers, k=2")
                broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
                fresh_names("celery2")  # before the workers start: they rebuild the job from it
                with CeleryWorkers(broker, home) as workers:
                    run = run_k(instance, settings, 2, args.rows, workers.config)
                run["null_sink_docs_per_s"] = next(
                    (r["null_sink_docs_per_s"] for r in runs if r["k"] == 2), None
                )
                log(str(run))
                runs.append(run)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base = runs[0]["docs_per_s"]
    summary = {
        "rows": args.rows,
        "cores": os.cpu_count(),
        "shards": runs,
        "speedup_vs_k1": {f"{r['executor']}-{r['k']}": round(r["docs_per_s"] / base, 2) for r in runs},
        "null_sink_speedup_vs_k1": {
            str(r["k"]): round(r["null_sink_docs_per_s"] / runs[0]["null_sink_docs_per_s"], 2)
            for r in runs
            if r["executor"] == "multiprocess"
        },
    }
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
