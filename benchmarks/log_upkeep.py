"""``python -m benchmarks.log_upkeep [--changes N] [--rows-per-statement K] [--trim-every S]``

Why: the change log is trimmed by DELETE below the slowest non-retired version. Issue 19 asks
whether trimming under load bloats it, and what a lagging version lets it grow to. This measures
both on the real PostgreSQL, in one run:

1. a fresh database ``bench_upkeep_<hex>`` with the demo schema, its tracking and ``--rows``
   products; ``v1`` is built once;
2. **with trims**: ``--changes`` row changes as UPDATE statements of ``--rows-per-statement``
   rows each (one log entry per statement), and after every ``--trim-every`` statements one sync
   of ``v1`` and one trim, as a follower and the asset do. The log's size on disk is sampled
   after each trim; ``log_bytes_max`` and ``log_bytes_final`` say whether it stays flat
   (autovacuum reuses the space DELETE frees) or grows;
3. **held by a version never synced**: the same again while a second version ``v2`` is declared
   and never synced, so nothing can be trimmed: ``held_log_bytes`` is what the log costs per
   change kept, which the ``change_log_within_threshold`` check and ``status`` report.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from typing import Any

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from catalogue.generate import create_schema, generate
from catalogue.source import CATALOGUE
from catalogue.versions import V1, V2
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings, make_engine


def log(message: str) -> None:
    print(f"log_upkeep: {message}", file=sys.stderr, flush=True)


def log_bytes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT pg_total_relation_size('etl_state.catalogue_changes')")).scalar_one()
        )


def write(engine: Engine, statements: int, per_statement: int, rows: int, start: int) -> int:
    """``statements`` UPDATEs of ``per_statement`` consecutive products each (wrapping around);
    returns where the next one starts."""
    with engine.connect() as conn:
        for _ in range(statements):
            low = start % rows + 1
            conn.execute(
                text("UPDATE products SET stock = stock + 1 WHERE id BETWEEN :a AND :b"),
                {"a": low, "b": low + per_statement - 1},
            )
            conn.commit()
            start += per_statement
    return start


def phase(
    conns: Connections,
    engine: Engine,
    versions: list[Any],
    synced: list[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Writes ``--changes`` changes; after every ``--trim-every`` statements syncs ``synced`` and
    trims for ``versions`` (every declared, non-retired version)."""
    statements = args.changes // args.rows_per_statement
    samples: list[int] = []
    start, done, began = 0, 0, time.perf_counter()
    while done < statements:
        n = min(args.trim_every, statements - done)
        start = write(engine, n, args.rows_per_statement, args.rows, start)
        done += n
        Operations(conns, CATALOGUE).sync(synced)
        Operations(conns, CATALOGUE, versions).trim()
        samples.append(log_bytes(engine))
    return {
        "statements": statements,
        "changes": statements * args.rows_per_statement,
        "seconds": round(time.perf_counter() - began, 1),
        "log_bytes_max": max(samples),
        "log_bytes_final": samples[-1],
        # the size after every tenth trim: flat once autovacuum reuses what trims free
        "log_bytes_every_10th_trim": samples[9::10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.log_upkeep")
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--rows-per-statement", type=int, default=100)
    parser.add_argument("--trim-every", type=int, default=50, help="statements between sync + trim")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--no-held", action="store_true", help="skip the phase a never-synced version holds")
    args = parser.parse_args(argv)

    base = Settings.from_env()
    run = uuid.uuid4().hex[:8]
    database = f"bench_upkeep_{run}"
    admin = make_engine(base.source_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = base.source_url.set(database=database)
    settings = dataclasses.replace(base, source_url=url, state_url=url)
    engine = make_engine(url, poolclass=NullPool)
    prefix = f"bench-upkeep-{run}"
    conns = Connections(settings, CATALOGUE.name)
    r: dict[str, Any] = {"rows": args.rows, "rows_per_statement": args.rows_per_statement}
    try:
        create_schema(engine)
        generate(engine, rows=args.rows, seed=7)
        conns.state.create()
        v1 = dataclasses.replace(V1, index=f"{prefix}-{V1.index}")
        v2 = dataclasses.replace(V2, index=f"{prefix}-{V2.index}")
        Operations(conns, CATALOGUE).sync([v1])
        Operations(conns, CATALOGUE, [v1]).trim()
        r["log_bytes_empty"] = log_bytes(engine)

        log(f"with trims: {args.changes} changes, sync + trim every {args.trim_every} statements")
        r["with_trims"] = phase(conns, engine, [v1], [v1], args)

        if not args.no_held:
            log("held: the same again while v2 is declared and never synced")
            held = phase(conns, engine, [v1, v2], [v1], args)
            r["held"] = held
            r["held_bytes_per_change"] = round(held["log_bytes_final"] / max(1, held["changes"]), 2)
            lag = conns.extractor(CATALOGUE).lag(conns.cursors.load(["v1", "v2"]))
            r["held_status_log"] = lag.log
        Operations(conns, CATALOGUE, [v1]).trim()  # v2 retired, in effect: everything goes
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM etl_state.catalogue_changes")
        r["log_bytes_after_trim_and_vacuum"] = log_bytes(engine)
        r["with_trims_growth_vs_empty"] = round(r["with_trims"]["log_bytes_final"] / r["log_bytes_empty"], 2)
    finally:
        conns.client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
        conns.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    print(orjson.dumps(r).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
