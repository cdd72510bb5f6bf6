"""One full sync of ``v1`` over the first N rows, in its own process, reporting peak RSS.

python -m benchmarks.rss --rows N --index NAME   (environment: the usual settings)
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys

import orjson

from catalogue.source import CATALOGUE, catalogue_select, products
from catalogue.versions import V1
from etl_core.connect import Connections
from etl_core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--index", required=True)
    args = parser.parse_args()
    conns = Connections(Settings.from_env(), CATALOGUE.name)
    source = dataclasses.replace(CATALOGUE, selectable=catalogue_select.where(products.c.id <= args.rows))
    version = dataclasses.replace(V1, index=args.index)
    version = dataclasses.replace(version, key=f"rss{args.rows}")
    conns.state.create()
    with conns.state.engine.begin() as conn:  # always a full backfill
        for table in (conns.state.cursors, conns.state.log_cursors):
            conn.execute(table.delete().where(table.c.version == version.key))
    result = conns.sync(source, [version])
    conns.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(orjson.dumps({"rows": result.rows_read, "peak_rss_mb": peak_kb / 1024}).decode())


if __name__ == "__main__":
    main()
