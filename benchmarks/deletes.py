"""``python -m benchmarks.deletes``: what a predicate version's rejected rows cost in deletes.

A version whose predicate rejects a row turns it into a delete, because the row may have matched
before. The demo's ``v3`` keeps products in stock; here 98 % of the rows have ``stock = 0``, so
almost every row it reads is rejected. Measured, one after the other in one process, on a fresh
database and index (both removed at the end):

* ``backfill``: the first sync of ``v3`` into an index the run creates;
* ``incremental``: the next sync, after a price change on 20 % of the rows (nine in ten of them
  rejected by the predicate, one in ten kept).

Per phase: wall seconds of the sync, the delete actions handed to the sink's ``write`` (what goes
into ``_bulk`` bodies), the ``_bulk`` requests, the ``_mget`` probes of
:meth:`~etl_core.write.sink.OpenSearchSink.existing` (and the ids they asked about), and the
``SyncResult`` totals. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from opensearchpy import OpenSearch
from sqlalchemy import text

from catalogue.generate import create_schema, generate
from catalogue.source import CATALOGUE
from catalogue.versions import V3
from etl_core import IndexVersion
from etl_core.model.records import Action, Outcome
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings, make_engine
from etl_core.write.sink import OpenSearchSink

PREFIX = "bench-deletes-"
KEEP_ONE_IN = 50  # v3 keeps the rows with id % 50 = 0: 2 %
CHANGE_ONE_IN = 5  # the incremental changes the rows with id % 5 = 0: 20 %


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


class CountingSink(OpenSearchSink):
    """The sink as the pipeline uses it, counting what it is asked to send and to probe."""

    def __init__(self, client: OpenSearch, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.reset()
        bulk = client.bulk

        def counted_bulk(*args: Any, **kw: Any) -> Any:
            self.bulk_requests += 1
            return bulk(*args, **kw)

        client.bulk = counted_bulk

    def reset(self) -> None:
        self.deletes_sent = 0
        self.actions_sent = 0
        self.bulk_requests = 0
        self.mget_probes = 0
        self.probed_ids = 0

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        self.actions_sent += len(actions)
        self.deletes_sent += sum(1 for a in actions if a.op == "delete")
        return super().write(actions)

    def existing(self, index: str, ids: Sequence[str]) -> set[str]:
        self.mget_probes += 1
        self.probed_ids += len(ids)
        return super().existing(index, ids)


def fresh_database(settings: Settings, name: str, rows: int, seed: int) -> Settings:
    """A new database ``name`` with ``rows`` generated products, 98 % of them out of stock."""
    admin = make_engine(settings.source_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = settings.source_url.set(database=name)
    engine = make_engine(url)
    create_schema(engine)
    log(f"generating {rows} rows (seed {seed})")
    generate(engine, rows, seed)
    with engine.begin() as conn:
        # exactly one row in KEEP_ONE_IN in stock (the generator leaves a few at 0 by chance)
        conn.execute(
            text(
                f"UPDATE products SET stock = CASE WHEN id % {KEEP_ONE_IN} = 0 "
                "THEN greatest(stock, 1) ELSE 0 END"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return dataclasses.replace(settings, source_url=url, state_url=url)


def drop_database(settings: Settings, name: str) -> None:
    admin = make_engine(settings.source_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def measured_sync(conns: Connections, sink: CountingSink, version: IndexVersion[Any]) -> dict[str, Any]:
    sink.reset()
    began = time.perf_counter()
    result = Operations(conns, CATALOGUE).sync([version], sink=sink)
    wall = time.perf_counter() - began
    totals = result.versions[version.key]
    return {
        "wall_s": round(wall, 3),
        "rows_read": result.rows_read,
        "pages": result.pages,
        "indexed": totals.indexed,
        "actions_sent": sink.actions_sent,
        "deletes_sent": sink.deletes_sent,
        "bulk_requests": sink.bulk_requests,
        "docs_deleted": totals.deleted,
        "not_found": totals.not_found,
        "mget_probes": sink.mget_probes,
        "probed_ids": sink.probed_ids,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deletes")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    base = Settings.from_env()
    run = uuid.uuid4().hex[:6]
    database = f"bench_deletes_{run}"
    settings = fresh_database(base, database, args.rows, args.seed)
    conns = Connections(settings, CATALOGUE.name)
    sink = CountingSink(
        conns.client,
        max_chunk_bytes=conns.sink.max_chunk_bytes,
        chunk_size=conns.sink.chunk_size,
        backoff=conns.sink.backoff,
        describe=conns.sink.describe,
    )
    v3 = dataclasses.replace(V3, index=f"{PREFIX}{run}-{V3.index}")
    r: dict[str, Any] = {"rows": args.rows}
    try:
        conns.state.create()
        with conns.source_engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM products WHERE stock > 0")).scalar_one()
        log(f"{kept} of {args.rows} rows in stock; backfill of {v3.key} into {v3.index}")
        r["backfill"] = measured_sync(conns, sink, v3)
        assert r["backfill"]["indexed"] == kept, r["backfill"]

        log(f"incremental: price change on one row in {CHANGE_ONE_IN}")
        with conns.source_engine.begin() as conn:
            changed = conn.execute(
                text(f"UPDATE products SET price_cents = price_cents + 1 WHERE id % {CHANGE_ONE_IN} = 0")
            ).rowcount
        r["incremental"] = measured_sync(conns, sink, v3)
        assert r["incremental"]["rows_read"] == changed, (changed, r["incremental"])
    finally:
        conns.client.indices.delete(index=f"{PREFIX}{run}-*", ignore_unavailable=True)
        conns.close()
        drop_database(base, database)

    for phase in ("backfill", "incremental"):
        for key, value in r[phase].items():
            print(f"{phase:12} {key:16} {value!s:>12}")
    print(orjson.dumps(r).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
