"""``python -m catalogue init|generate|churn``: the demo's data from a shell.

Syncing is ``python -m etl_core --source catalogue.source:CATALOGUE --versions
catalogue.versions:VERSIONS sync`` (or ``follow``), as for any source.
"""

from __future__ import annotations

import argparse
import logging
import sys

import orjson

from catalogue.generate import churn, create_schema, generate, reset
from catalogue.source import CATALOGUE
from etl_core import EtlError
from etl_core.operations.connect import Connections
from etl_core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m catalogue")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the catalogue tables and their generated change capture (idempotent)")
    g = sub.add_parser("generate", help="append N deterministic products")
    g.add_argument("--rows", type=int, default=10_000)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--reset", action="store_true", help="empty the catalogue first")
    c = sub.add_parser("churn", help="random inserts, updates, soft and hard deletes")
    c.add_argument("--rate", type=float, default=20.0, help="changes per second")
    c.add_argument("--seconds", type=float, default=60.0)
    c.add_argument("--seed", type=int, default=7)
    c.add_argument(
        "--long-share", type=float, default=0.05, help="share of changes held in a long transaction"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    try:
        conns = Connections(Settings.from_env(), CATALOGUE.name)
        try:
            if args.command == "init":
                create_schema(conns.source_engine)
                conns.state.create()
            elif args.command == "generate":
                create_schema(conns.source_engine)
                if args.reset:
                    reset(conns.source_engine)
                print(orjson.dumps(generate(conns.source_engine, args.rows, args.seed)).decode())
            else:
                done = churn(
                    conns.source_engine,
                    rate=args.rate,
                    seconds=args.seconds,
                    seed=args.seed,
                    long_share=args.long_share,
                )
                print(orjson.dumps(dict(done)).decode())
        finally:
            conns.close()
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
