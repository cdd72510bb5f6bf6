"""``python -m forum init [--posts N]``: the forum's tables and change capture, and demo posts on
an empty forum (what ``scripts/dev.sh`` runs). ``python -m forum churn --rounds N``: changes."""

from __future__ import annotations

import argparse

from sqlalchemy import func, select

from etl_core.settings import Settings, make_engine
from forum.generate import churn, create_schema, generate
from forum.source import posts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forum")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the tables and change capture; posts if empty")
    init.add_argument("--posts", type=int, default=2000)
    changes = sub.add_parser("churn", help="changes of every kind, one transaction each")
    changes.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    engine = make_engine(Settings.from_env().source_url)
    try:
        if args.command == "init":
            create_schema(engine)
            with engine.connect() as conn:
                empty = conn.execute(select(func.count()).select_from(posts)).scalar_one() == 0
            if empty:
                generate(engine, args.posts)
        else:
            churn(engine, args.rounds)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
