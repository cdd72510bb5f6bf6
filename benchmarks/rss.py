"""One full sync of ``v1`` over the first N rows, in its own process, reporting peak RSS.

python -m benchmarks.rss --rows N --index NAME   (environment: the usual settings)
python -m benchmarks.rss --rows N --index NAME --fan-out   (after the above, in a new process)

``--fan-out``: the incremental sync after a parent change that reaches many documents (the
category with the most products is renamed to itself: one log entry), on the version the full
sync built. Its peak RSS against the full sync's shows that pages are bounded in documents, not in
log entries. Both report their rows and seconds too: a document reached through a parent should
cost about what a backfilled one does (``fan_out_per_doc_vs_full`` in ``benchmarks.run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time

import orjson

from catalogue.source import CATALOGUE, catalogue_select, products
from catalogue.versions import V1
from etl_core.operations.connect import Connections
from etl_core.operations.steps import Operations
from etl_core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--fan-out", action="store_true", help="the incremental sync of a category rename")
    args = parser.parse_args()
    conns = Connections(Settings.from_env(), CATALOGUE.name)
    source = dataclasses.replace(CATALOGUE, selectable=catalogue_select.where(products.c.id <= args.rows))
    version = dataclasses.replace(V1, index=args.index)
    version = dataclasses.replace(version, key=f"rss{args.rows}")
    conns.state.create()
    if args.fan_out:
        with conns.source_engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE categories SET name = name WHERE id = (SELECT category_id FROM product_categories"
                f" WHERE product_id <= {int(args.rows)} GROUP BY category_id ORDER BY count(*) DESC LIMIT 1)"
            )
    else:
        with conns.state.engine.begin() as conn:  # always a full backfill
            for table in (conns.state.cursors, conns.state.log_cursors):
                conn.execute(table.delete().where(table.c.version == version.key))
    began = time.perf_counter()
    result = Operations(conns, source).sync([version])
    seconds = time.perf_counter() - began
    conns.close()
    found = {"rows": result.rows_read, "seconds": seconds, "peak_rss_mb": peak_rss_kb() / 1024}
    sys.stdout.write(orjson.dumps(found).decode())


def peak_rss_kb() -> int:
    """This process's own peak RSS: ``VmHWM``, the high-water mark of its address space.

    Not ``getrusage().ru_maxrss``: Linux carries it over an ``exec`` from the address space the
    process replaced, so a process spawned by a large parent (``benchmarks.run``, 190 MB after
    its pipelines) reports at least the parent's size whatever it does itself. That is what the
    "95 → 200 MB" of the third session measured."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


if __name__ == "__main__":
    main()
