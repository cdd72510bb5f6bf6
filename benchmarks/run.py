"""``python -m benchmarks.run``: the pipeline measured against its ceilings, side by side.

Everything runs in one process, on the same data and the same node, so the ratios mean something
on a shared, noisy machine even when the absolute seconds do not. The last line of output is one
JSON object (see benchmarks/README.md for the fields and the targets).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text

from catalogue.generate import create_schema, generate, reset
from catalogue.source import CATALOGUE
from catalogue.versions import V1_SQL, VERSIONS
from etl_core import IndexVersion
from etl_core.flow.route import serialise
from etl_core.model.records import Page
from etl_core.model.versions import BACKFILL_SETTINGS
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import BULK_ANSWER_FIELDS

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
PREFIX = "bench-"


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def prepare_database(settings: Settings, rows: int, seed: int, database: str = "bench") -> Settings:
    """A dedicated database holding exactly ``rows`` generated products (kept between runs with
    the same size, so repeated benchmarks skip the data load)."""
    admin = make_engine(settings.source_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first():
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    url = settings.source_url.set(database=database)
    engine = make_engine(url)
    create_schema(engine)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM products")).scalar_one()
    if have != rows:
        log(f"generating {rows} rows (seed {seed})")
        reset(engine)
        generate(engine, rows, seed)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return dataclasses.replace(settings, source_url=url, state_url=url)


def fresh(versions: list[IndexVersion[Any]], tag: str) -> list[IndexVersion[Any]]:
    """The versions under new keys and index names: a measurement always starts from nothing."""
    return [dataclasses.replace(v, key=f"{tag}{v.key}", index=f"{PREFIX}{tag}{v.index}") for v in versions]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: str) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids() -> dict[str, list[str]]:
    """The local OpenSearch JVM (its main class on the command line) and PostgreSQL processes
    (``postgres`` in their process title). Services on other hosts are not seen."""
    pids: dict[str, list[str]] = {"opensearch": [], "postgres": []}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"org.opensearch.bootstrap.OpenSearch" in cmdline:
            pids["opensearch"].append(pid)
        elif b"postgres" in cmdline.split(b"\0", 1)[0]:
            pids["postgres"].append(pid)
    return pids


def service_cpu() -> dict[str, float]:
    """CPU seconds the local OpenSearch and PostgreSQL processes have used so far: the two
    services' share of the same cores (a backend that has exited meanwhile is not counted)."""
    return {name: sum(map(_cpu_of, pids)) for name, pids in service_pids().items()}


def pin(opensearch: set[int], others: set[int]) -> None:
    """Restrict the local OpenSearch JVM (every thread of it) to ``opensearch`` and PostgreSQL
    (the postmaster, whose new backends inherit it, and the running backends) and this process to
    ``others``. With {1} and {0} the two cores are split as if OpenSearch had a machine of its
    own; with all cores for both, everything is as before."""
    pids = service_pids()
    for pid in pids["opensearch"]:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), opensearch)
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    for pid in pids["postgres"]:
        try:
            os.sched_setaffinity(int(pid), others)
        except ProcessLookupError:
            continue
    os.sched_setaffinity(0, others)


def cpu_stopwatch() -> Callable[[], dict[str, float]]:
    """A stopwatch of CPU seconds from now, by process: ``python`` (this one), ``opensearch`` and
    ``postgres`` (the local services)."""
    python_before, services_before = cpu_seconds(), service_cpu()

    def spent() -> dict[str, float]:
        services = service_cpu()
        return {
            "python": cpu_seconds() - python_before,
            **{k: services[k] - services_before[k] for k in services},
        }

    return spent


def timed_sync(conns: Connections, versions: list[IndexVersion[Any]]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = Operations(conns, CATALOGUE).sync(versions)
    return time.perf_counter() - began, result


def walk(conns: Connections) -> Iterator[Page[Any]]:
    """The pages a full sync reads: the backfill by key, then the (empty) log after it."""
    extractor = conns.extractor(CATALOGUE)
    return extractor.changes({"walk": None}, extractor.watermark())


def extract_only(conns: Connections) -> tuple[float, int]:
    began, rows = time.perf_counter(), 0
    for page in walk(conns):
        rows += len(page.changes)
    return time.perf_counter() - began, rows


def ceiling(conns: Connections, version: IndexVersion[Any]) -> dict[str, float]:
    """Raw ``_bulk`` of pre-serialised documents: the same documents, bodies and sizes the
    pipeline sends, one page a request, one request at a time, into a fresh index with the
    backfill settings.

    The bodies are built first (into a temporary file, so memory stays flat at any size), then
    sent back to back: the wall clock of that loop is the ceiling, and it includes the node's
    work between requests (merges, refreshes of the indexing buffer), which a pipeline cannot
    avoid either. The sum of the requests' own times is reported beside it, as earlier runs
    measured the ceiling: it leaves that background work out and is higher."""
    client = conns.client
    index = f"{PREFIX}ceiling"
    client.indices.delete(index=index, ignore_unavailable=True)
    settings = {
        **version.settings,
        "index": {**dict(version.settings.get("index", {})), **BACKFILL_SETTINGS["index"]},
    }
    client.indices.create(index=index, body={"settings": settings, "mappings": version.mappings})
    docs = 0
    with tempfile.TemporaryFile(dir=os.environ.get("BENCH_TMPDIR")) as bodies:
        for page in walk(conns):
            if not page.changes:
                continue
            lines = []
            for change in page.changes:
                meta = {
                    "index": {
                        "_index": index,
                        "_id": str(change.key),
                        "version": change.external,
                        "version_type": "external_gte",
                    }
                }
                lines.append(orjson.dumps(meta))
                lines.append(serialise(version.transform(change.record)))
            body = b"\n".join(lines) + b"\n"
            bodies.write(len(body).to_bytes(8, "little") + body)
            docs += len(page.changes)
        end = bodies.tell()
        bodies.seek(0)
        requests_s = 0.0
        jvm = service_pids()["opensearch"]
        jvm_before = sum(map(_cpu_of, jvm))
        began = time.perf_counter()
        while bodies.tell() < end:
            body = bodies.read(int.from_bytes(bodies.read(8), "little"))
            sent = time.perf_counter()
            # the answer filtered as the sink asks for it: the ceiling pays no parsing the sink skips
            response = client.bulk(body=body, filter_path=BULK_ANSWER_FIELDS)
            requests_s += time.perf_counter() - sent
            assert not response["errors"], "the ceiling run must index every document"
        wall_s = time.perf_counter() - began
        jvm_s = sum(map(_cpu_of, jvm)) - jvm_before
    client.indices.delete(index=index)
    return {
        "ceiling_s": wall_s,
        "ceiling_docs_per_s": docs / wall_s,
        "ceiling_requests_only_docs_per_s": docs / requests_s,
        "ceiling_opensearch_cpu_us_per_doc": jvm_s * 1e6 / docs,
    }


def incremental(conns: Connections, versions: list[IndexVersion[Any]], part: int) -> tuple[float, int]:
    """One incremental sync of the lane after 1 % of the rows changed (``id % 100 = part``):
    its seconds, and the rows changed (each read once, and only those)."""
    with conns.source_engine.begin() as conn:
        changed = conn.execute(
            text("UPDATE products SET price_cents = price_cents + 1 WHERE id % 100 = :part"), {"part": part}
        ).rowcount
    s, result = timed_sync(conns, versions)
    assert result.rows_read == changed
    return s, changed


def settle(client: Any, timeout_s: float = 300.0) -> float:
    """Wait until the node runs no merge (twice in a row, a second apart): right after a backfill
    of millions of documents OpenSearch merges their segments for a minute or more, and an
    incremental sync measured then measures that backlog too. The seconds waited."""
    began, quiet = time.perf_counter(), 0
    while quiet < 2 and time.perf_counter() - began < timeout_s:
        stats = client.nodes.stats(metric="indices", index_metric="merge")
        running = sum(n["indices"]["merges"]["current"] for n in stats["nodes"].values())
        quiet = quiet + 1 if running == 0 else 0
        time.sleep(1)
    return time.perf_counter() - began


def peak_rss(rows: int, fan_out_too: bool = False) -> dict[str, float]:
    """Peak RSS of a full sync of ``rows`` rows in a process of its own; with ``fan_out_too``,
    then of the incremental sync of a category rename reaching many of them, in another process."""
    index = f"{PREFIX}rss-{uuid.uuid4().hex[:6]}"
    found = {}
    for extra in ([], ["--fan-out"]) if fan_out_too else ([],):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.rss", "--rows", str(rows), "--index", index, *extra],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        last = orjson.loads(out.stdout.strip().splitlines()[-1])
        kind = "fan_out" if extra else "full"
        found[kind] = float(last["peak_rss_mb"])
        found[f"{kind}_rows"], found[f"{kind}_s"] = float(last["rows"]), float(last["seconds"])
    return found


class Stall:
    """``--stall``: a session in another database of the server holds an xid idle in
    transaction (it stopped every source under the reader that came before)."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.source_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()
        self.conn.exec_driver_sql("BEGIN")
        self.conn.exec_driver_sql("SELECT pg_current_xact_id()")

    def close(self) -> None:
        self.conn.exec_driver_sql("ROLLBACK")
        self.conn.close()
        self.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--small-rows", type=int, default=100_000, help="the smaller table size for the peak-RSS comparison"
    )
    parser.add_argument("--versions", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: 30 000 rows, RSS at 5 000 and 30 000 (under two minutes)",
    )
    parser.add_argument(
        "--stall",
        action="store_true",
        help="hold an xid idle in transaction in another database for the whole run",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="OpenSearch on the last CPU, PostgreSQL and this process on the others (as if "
        "OpenSearch had a machine of its own); both ceiling and pipeline are measured so",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.small_rows = 30_000, 5_000
    if args.stall:
        stall = Stall(Settings.from_env())
        try:
            return main_measure(args)
        finally:
            stall.close()
    return main_measure(args)


def main_measure(args: argparse.Namespace) -> int:
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least two CPUs")
        pin({cpus[-1]}, set(cpus[:-1]))
        try:
            return measure(args)
        finally:
            pin(set(cpus), set(cpus))
    return measure(args)


def measure(args: argparse.Namespace) -> int:

    base = Settings.from_env()
    settings = prepare_database(base, args.rows, args.seed)
    os.environ["SOURCE_DATABASE_URL"] = settings.source_url.render_as_string(hide_password=False)
    os.environ["STATE_DATABASE_URL"] = os.environ["SOURCE_DATABASE_URL"]
    conns = Connections(settings, CATALOGUE.name)
    conns.state.create()
    conns.client.indices.delete(index=f"{PREFIX}*", ignore_unavailable=True)
    versions = list(VERSIONS[: args.versions])
    run = uuid.uuid4().hex[:4]
    r: dict[str, Any] = {
        "rows": args.rows,
        "versions": args.versions,
        "page_size": settings.page_size,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "pinned": args.pin,
        "date": datetime.now(UTC).isoformat(),
    }

    log("extract only")
    spent = cpu_stopwatch()
    r["extract_only_s"], rows = extract_only(conns)
    r["extract_only_core_s"] = sum(spent().values())
    assert rows == args.rows
    r["extract_rows_per_s"] = rows / r["extract_only_s"]

    log("ceiling: raw _bulk of pre-serialised v1 documents")
    r.update(ceiling(conns, versions[0]))

    log("pipeline: v1 alone")
    spent = cpu_stopwatch()
    s, _ = timed_sync(conns, fresh(versions[:1], f"p{run}"))
    r["pipeline_1v_s"], r["pipeline_docs_per_s"] = s, args.rows / s
    # CPU per document of the whole sync, by process: this one (extraction's decoding, normalise,
    # transform, serialise, the _bulk bodies), the OpenSearch JVM and PostgreSQL, all on the same
    # cores. Their sum against the cores is the model of what bounds the pipeline on this node.
    shares = {f"pipeline_{k}_cpu_us_per_doc": v * 1e6 / args.rows for k, v in spent().items()}
    r.update(shares)
    r["pipeline_cpu_us_per_doc"] = r["pipeline_python_cpu_us_per_doc"]  # the name issue 14 reports
    r["pipeline_core_us_per_doc"] = sum(shares.values())
    r["pipeline_cores_busy"] = r["pipeline_core_us_per_doc"] * r["pipeline_docs_per_s"] / 1e6

    log("pipeline: v1's twin whose documents PostgreSQL builds (document_sql), alone")
    spent = cpu_stopwatch()
    s, _ = timed_sync(conns, fresh([V1_SQL], f"q{run}"))
    r["pipeline_sql_1v_s"], r["pipeline_sql_docs_per_s"] = s, args.rows / s
    sql_shares = {f"pipeline_sql_{k}_cpu_us_per_doc": v * 1e6 / args.rows for k, v in spent().items()}
    r.update(sql_shares)
    r["pipeline_sql_core_us_per_doc"] = sum(sql_shares.values())
    for kind in ("pipeline", "pipeline_sql"):  # what the target counts: ours, not the node's search
        r[f"{kind}_python_postgres_cpu_us_per_doc"] = (
            r[f"{kind}_python_cpu_us_per_doc"] + r[f"{kind}_postgres_cpu_us_per_doc"]
        )

    log(f"pipeline: {args.versions} versions in one lane")
    shared = fresh(versions, f"s{run}")
    spent = cpu_stopwatch()
    s, result = timed_sync(conns, shared)
    r["shared_3v_core_s"] = sum(spent().values())
    r["shared_3v_s"], r["shared_rows_read"] = s, result.rows_read
    r["statements_shared"], r["pages"] = result.statements, result.pages

    log(f"pipeline: the same {args.versions} versions as separate runs")
    separate_s, separate_rows = 0.0, 0
    spent = cpu_stopwatch()
    for v in fresh(versions, f"x{run}"):
        s, result = timed_sync(conns, [v])
        separate_s += s
        separate_rows += result.rows_read
    r["separate_3v_s"], r["separate_rows_read"] = separate_s, separate_rows
    r["separate_3v_core_s"] = sum(spent().values())

    log("incremental: 1 % of the rows changed, into the shared lane, right after the backfills")
    s, changed = incremental(conns, shared, 0)
    r["incremental_first_s"], r["incremental_rows"] = s, changed
    log("incremental: the node settled (no merge running), three more 1 % slices")
    r["settle_s"] = settle(conns.client)
    settled = [incremental(conns, shared, part)[0] for part in (1, 2, 3)]
    r["incremental_settled_s"] = [round(x, 3) for x in settled]
    r["incremental_s"] = statistics.median(settled)

    log(f"peak RSS at {args.small_rows} and {args.rows} rows, then a category rename (separate processes)")
    r["peak_rss_mb_small"] = peak_rss(args.small_rows)["full"]
    large = peak_rss(args.rows, fan_out_too=True)
    r["peak_rss_mb_large"], r["peak_rss_mb_fan_out"] = large["full"], large["fan_out"]
    r["fan_out_rows"] = int(large["fan_out_rows"])
    r["rss_full_rows"], r["rss_full_s"], r["fan_out_s"] = (
        int(large["full_rows"]),
        large["full_s"],
        large["fan_out_s"],
    )
    conns.client.indices.delete(index=f"{PREFIX}*", ignore_unavailable=True)
    conns.close()

    ratios = {
        "pipeline_vs_ceiling": r["pipeline_docs_per_s"] / r["ceiling_docs_per_s"],
        "pipeline_sql_vs_ceiling": r["pipeline_sql_docs_per_s"] / r["ceiling_docs_per_s"],
        "pipeline_sql_vs_python": r["pipeline_sql_docs_per_s"] / r["pipeline_docs_per_s"],
        "pipeline_vs_ceiling_requests_only": r["pipeline_docs_per_s"] / r["ceiling_requests_only_docs_per_s"],
        "shared_saving_vs_2_extractions": (r["separate_3v_s"] - r["shared_3v_s"]) / (2 * r["extract_only_s"]),
        # the same saving in CPU (this process, PostgreSQL, OpenSearch): the work not done twice,
        # whether or not the pipeline's overlap had hidden its time
        "shared_core_saving_vs_2_extractions": (r["separate_3v_core_s"] - r["shared_3v_core_s"])
        / (2 * r["extract_only_core_s"]),
        "rss_large_vs_small": r["peak_rss_mb_large"] / r["peak_rss_mb_small"],
        "rss_fan_out_vs_full": r["peak_rss_mb_fan_out"] / r["peak_rss_mb_large"],
        "incremental_vs_full_3v": r["incremental_s"] / r["shared_3v_s"],
        "incremental_first_vs_full_3v": r["incremental_first_s"] / r["shared_3v_s"],
        # seconds per document of the category rename's sync against the same process's full sync
        "fan_out_per_doc_vs_full": (r["fan_out_s"] / r["fan_out_rows"])
        / (r["rss_full_s"] / r["rss_full_rows"]),
    }
    r.update(ratios)
    targets = {
        "pipeline_vs_ceiling": ">= 0.75",
        "pipeline_sql_vs_ceiling": ">= 0.8",
        "pipeline_sql_python_postgres_cpu_us_per_doc": "<= 15",
        "shared_saving_vs_2_extractions": ">= 0.8",
        "rss_large_vs_small": "<= 1.05",
        "incremental_vs_full_3v": "<= 0.01",
        "rss_fan_out_vs_full": "<= 1.05",  # its chunk of root keys on top of the pages: see the README
    }
    r["stalled"] = args.stall
    for key, value in r.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{key:32} {shown:>20} {targets.get(key, '')}")
    print(orjson.dumps(r).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
