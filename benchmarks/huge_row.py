"""What one huge row costs a sync in memory: peak RSS of a three-version sync of 2 000 rows, with
and without one row whose description is ``--mb`` megabytes (past the node's request limit at
101 MB, so every version dead-letters it), each in a process of its own.

    python -m benchmarks.huge_row --mb 101

Prints JSON: both peaks, the difference, and ``extra_rss_per_row_mb``: the difference over the
row's size (how many copies of the row the sync held at once; 1 is the row itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import orjson
from sqlalchemy import text

from benchmarks.rss import peak_rss_kb
from benchmarks.run import log, prepare_database
from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings

ROWS = 2000
DATABASE = "bench_huge"


def child(tag: str) -> None:
    """One full sync of the three versions under fresh index names; peak RSS as JSON."""
    settings = dataclasses.replace(Settings.from_env(), page_size=200)
    settings = prepare_database(settings, ROWS, 7, DATABASE)
    conns = Connections(settings, CATALOGUE.name)
    conns.state.create()
    versions = [
        dataclasses.replace(v, key=f"{v.key}{tag}", index=f"bench-huge-{tag}-{v.index}") for v in VERSIONS
    ]
    try:
        result = Operations(conns, CATALOGUE).sync(versions)
        letters = sum(t.dead_letters for t in result.versions.values())
    finally:
        for v in versions:
            conns.client.indices.delete(index=v.index, ignore_unavailable=True)
        with conns.state.engine.begin() as conn:
            for table in (conns.state.cursors, conns.state.log_cursors, conns.state.dead_letters):
                conn.execute(table.delete().where(table.c.version.in_([v.key for v in versions])))
        conns.close()
    peak_mb = peak_rss_kb() / 1024  # this process's own, not its parent's (benchmarks.rss)
    sys.stdout.write(orjson.dumps({"peak_rss_mb": round(peak_mb, 1), "dead_letters": letters}).decode())


def measure(tag: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.huge_row", "--child", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(orjson.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=101)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    settings = prepare_database(Settings.from_env(), ROWS, 7, DATABASE)
    engine = Connections(settings, CATALOGUE.name).source_engine

    def describe(size: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE products SET description = repeat('x', :n) WHERE id = 1000"), {"n": size}
            )

    describe(200)
    log("baseline: no huge row")
    base = measure("base")
    log(f"one row of {args.mb} MB")
    describe(args.mb * 1024 * 1024)
    try:
        huge = measure("huge")
    finally:
        describe(200)
    extra = huge["peak_rss_mb"] - base["peak_rss_mb"]
    print(
        orjson.dumps(
            {
                "row_mb": args.mb,
                "baseline_peak_rss_mb": base["peak_rss_mb"],
                "huge_row_peak_rss_mb": huge["peak_rss_mb"],
                "dead_letters": huge["dead_letters"],
                "extra_rss_mb": round(extra, 1),
                "extra_rss_per_row_mb": round(extra / args.mb, 2),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
