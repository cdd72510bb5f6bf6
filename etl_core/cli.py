"""``python -m etl_core``: any source, from a shell, without Dagster.

    python -m etl_core --source catalogue.source:CATALOGUE tracking plan
    python -m etl_core --source catalogue.source:CATALOGUE tracking apply
    python -m etl_core --source catalogue.source:CATALOGUE --versions catalogue.versions:VERSIONS sync
    python -m etl_core --source … --versions … follow --seconds 300
    python -m etl_core --source … --versions … trim

``--source`` names a :class:`~etl_core.Source` (``package.module:ATTR``), ``--versions`` a sequence
of :class:`~etl_core.IndexVersion`. Connection settings come from the environment (README).
``tracking apply``/``remove`` run as ``TRACKING_DATABASE_URL`` when it is set (a role that may
create triggers on the tables), else as ``SOURCE_DATABASE_URL``. Exit codes: 0 done, 1 a clear
error (the message says what to fix), 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from etl_core.connect import Connections
from etl_core.errors import ConfigError, EtlError, SourceUnavailable
from etl_core.retry import transient_db_error
from etl_core.settings import Settings, make_engine, url_from_env
from etl_core.source import Source
from etl_core.tracking import Tracking
from etl_core.versions import IndexVersion


def load_object(spec: str, what: str) -> Any:
    """``package.module:ATTR`` → the object, or a ConfigError that says what was wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--{what} {spec!r} must look like package.module:ATTR")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--{what}: cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"--{what}: module {module_name!r} has no attribute {attr!r}") from None


def _source(spec: str) -> Source[Any]:
    found = load_object(spec, "source")
    if not isinstance(found, Source):
        raise ConfigError(f"--source {spec!r} is a {type(found).__name__}, not an etl_core.Source")
    return found


def _versions(spec: str | None) -> list[IndexVersion[Any]]:
    if spec is None:
        raise ConfigError("this command needs --versions package.module:ATTR (a list of IndexVersion)")
    found = load_object(spec, "versions")
    versions = list(found) if isinstance(found, Sequence) else []
    if not versions or not all(isinstance(v, IndexVersion) for v in versions):
        raise ConfigError(f"--versions {spec!r} must be a non-empty sequence of etl_core.IndexVersion")
    return versions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m etl_core", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="package.module:ATTR of an etl_core.Source")
    parser.add_argument("--versions", help="package.module:ATTR of a sequence of etl_core.IndexVersion")
    sub = parser.add_subparsers(dest="command", required=True)
    tracking = sub.add_parser("tracking", help="the source's generated change capture")
    tracking.add_argument("verb", choices=["plan", "apply", "remove", "status"])
    sub.add_parser("sync", help="bring the versions up to the source once, in one lane")
    f = sub.add_parser("follow", help="sync on every change notification until the window ends")
    f.add_argument("--seconds", type=float, default=300.0, help="how long to follow (the window)")
    f.add_argument("--debounce", type=float, default=0.05, help="wait for more changes this long")
    sub.add_parser(
        "trim",
        help="delete change-log entries every listed version has read (list every version still synced)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    try:
        source = _source(args.source)
        if args.command == "tracking":
            return _tracking(source, args.verb)
        versions = _versions(args.versions)
        conns = Connections(Settings.from_env())
        try:
            conns.state.create()
            if args.command == "sync":
                result = conns.sync(source, versions)
                _print(result.report())
            elif args.command == "trim":
                cursors = conns.cursors.load(v.key for v in versions)
                _print({"trimmed": conns.extractor(source).trim(list(cursors.values()))})
            else:
                runs = conns.follow(source, versions, window_s=args.seconds, debounce_s=args.debounce)
                _print(
                    {
                        "syncs": runs.syncs,
                        "wakeups": runs.wakeups,
                        "polls": runs.polls,
                        "indexed": runs.indexed,
                    }
                )
        finally:
            conns.close()
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _tracking(source: Source[Any], verb: str) -> int:
    if source.tracking is None:
        raise ConfigError(
            f"source {source.name!r} declares no tracking; add tracking=Tracking(...) to use change capture"
        )
    if verb == "plan":
        print(source.tracking.plan(), end="")
        return 0
    env = os.environ
    name = "TRACKING_DATABASE_URL" if env.get("TRACKING_DATABASE_URL") else "SOURCE_DATABASE_URL"
    engine = make_engine(url_from_env(env, name))
    try:
        return _run_tracking(source, source.tracking, verb, engine)
    except DBAPIError as exc:
        if transient_db_error(exc):
            raise SourceUnavailable(
                f"PostgreSQL could not be reached ({name}) to {verb} tracking: {type(exc.orig).__name__}"
            ) from None
        raise ConfigError(
            f"PostgreSQL refused the tracking DDL of {source.name!r} ({type(exc.orig).__name__}: "
            f"{str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ''}). Apply it as a role "
            "that owns the tracked tables (set TRACKING_DATABASE_URL), or hand `tracking plan` to "
            "your DBA"
        ) from None
    finally:
        engine.dispose()


def _run_tracking(source: Source[Any], tracking: Tracking, verb: str, engine: Engine) -> int:
    if verb == "apply":
        tracking.apply(engine)
        print(f"tracking of {source.name!r} applied")
    elif verb == "remove":
        tracking.remove(engine)
        print(f"tracking of {source.name!r} removed")
    else:
        installed = tracking.installed(engine)
        print(f"tracking of {source.name!r}: {'installed' if installed else 'not installed'}")
        return 0 if installed else 1
    return 0


def _print(data: dict[str, Any]) -> None:
    print(orjson.dumps(data, default=str).decode())
