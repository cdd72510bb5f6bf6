"""``python -m etl_core``: any source, from a shell, without Dagster.

    python -m etl_core --source myproject.search:ORDERS tracking plan
    python -m etl_core --source … --versions myproject.search:VERSIONS sync
    python -m etl_core --source … --versions … status
    python -m etl_core --source … --versions … validate v2
    python -m etl_core --source … --versions … cut-over v2

``--source`` names a :class:`~etl_core.Source` (``package.module:ATTR``), ``--versions`` a sequence
of :class:`~etl_core.IndexVersion`. Connection settings come from the environment (README);
``ETL_INDEX_PREFIX`` goes before every index name and the read alias, as in Dagster. Cursors,
dead letters, validations and retirements are the same records the Dagster jobs read and write,
so a source can move between the two without re-reading anything.

Exit codes: 0 done; 1 a clear error (the message says what to fix), or a check that did not pass
(``validate``, ``tracking status`` when not installed); 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from etl_core.collector import tune_for_syncs
from etl_core.connect import Connections
from etl_core.errors import ConfigError, EtlError, SourceUnavailable
from etl_core.lanes import LaneBusy
from etl_core.lifecycle import Lifecycles, cut_over, delete_expired, retire
from etl_core.planner import CloseEnough
from etl_core.reconcile import reconcile
from etl_core.replay import replay_dead_letters
from etl_core.retry import transient_db_error
from etl_core.settings import Declared, make_engine
from etl_core.source import Source
from etl_core.status import describe_versions
from etl_core.tracking import Tracking
from etl_core.validation import Thresholds, validate
from etl_core.versions import IndexVersion, pick, validate_versions, with_prefix


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


def _versions(spec: str | None, source: Source[Any]) -> list[IndexVersion[Any]]:
    if spec is None:
        raise ConfigError("this command needs --versions package.module:ATTR (a list of IndexVersion)")
    found = load_object(spec, "versions")
    versions = list(found) if isinstance(found, Sequence) else []
    if not versions or not all(isinstance(v, IndexVersion) for v in versions):
        raise ConfigError(f"--versions {spec!r} must be a non-empty sequence of etl_core.IndexVersion")
    versions = with_prefix(versions, Declared.read().etl_index_prefix)
    validate_versions(versions, source.fields)
    return versions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m etl_core",
        description="Sync any source to OpenSearch from a shell, without Dagster "
        "(the same cursors, dead letters and validations the Dagster jobs use).",
        epilog="Each command has --help. Exit codes: 0 done, 1 an error or a failed check, 2 usage.",
    )
    parser.add_argument("--source", required=True, help="package.module:ATTR of an etl_core.Source")
    parser.add_argument("--versions", help="package.module:ATTR of a sequence of etl_core.IndexVersion")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tracking = sub.add_parser("tracking", help="the source's generated change capture")
    tracking.add_argument("verb", choices=["plan", "apply", "remove", "status"])
    tracking.add_argument(
        "--force", action="store_true", help="remove: drop the log even if it holds unread entries"
    )

    s = sub.add_parser("sync", help="bring the versions up to the source, in one lane (one read for all)")
    s.add_argument("only", nargs="*", metavar="VERSION", help="sync only these (default: all not retired)")
    s.add_argument("--max-pages", type=int, default=None, help="stop after this many pages")
    f = sub.add_parser("follow", help="sync on every change notification until the window ends")
    f.add_argument("--seconds", type=float, default=300.0, help="how long to follow (the window)")
    f.add_argument("--debounce", type=float, default=0.05, help="wait for more changes this long")
    sub.add_parser(
        "trim",
        help="delete change-log entries every listed version has read (list every version still synced)",
    )
    sub.add_parser("status", help="per version: lifecycle, cursor, lag, open dead letters, validation")
    v = sub.add_parser("validate", help="compare every document with the source; record the result")
    v.add_argument("version")
    c = sub.add_parser("cut-over", help="point the read alias at a validated version (atomic)")
    c.add_argument("version")
    r = sub.add_parser(
        "retire", help="stop syncing a version; reconcile deletes its index after a grace period"
    )
    r.add_argument("version")
    r.add_argument("--grace-hours", type=float, default=24.0)
    p = sub.add_parser("replay", help="re-read dead-lettered rows by key and index them again")
    p.add_argument("only", nargs="*", metavar="VERSION", help="default: all not retired")
    k = sub.add_parser(
        "reconcile", help="walk both sides' keys; repair drift; delete expired retired indices"
    )
    k.add_argument("only", nargs="*", metavar="VERSION", help="default: all not retired")
    k.add_argument("--report-only", action="store_true", help="count the drift, repair nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    tune_for_syncs()  # this process is the command line's own (etl_core.collector)
    try:
        source = _source(args.source)
        if args.command == "tracking":
            return _tracking(source, args.verb, force=args.force)
        versions = _versions(args.versions, source)
        conns = Connections(Declared.read().services(), source.name)
        try:
            conns.state.create()
            return _run(args, source, versions, conns)
        finally:
            conns.close()
    except LaneBusy as exc:
        print(
            f"error: {exc} (a sync, a follower or a Dagster run holds it; try again later)", file=sys.stderr
        )
        return 1
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(
    args: argparse.Namespace, source: Source[Any], versions: list[IndexVersion[Any]], conns: Connections
) -> int:
    env = Declared.read()
    alias = f"{env.etl_index_prefix}{source.read_alias}"
    life = Lifecycles(conns.state)
    active = [v for v in versions if v.key not in life.retired()]
    cmd = args.command
    if cmd == "sync":
        synced = conns.sync(source, pick(active, args.only), max_pages=args.max_pages).report()
        _print({**synced, "log_trimmed": conns.trim(source, active)})
    elif cmd == "follow":
        runs = conns.follow(source, active, window_s=args.seconds, debounce_s=args.debounce)
        _print(
            {
                "syncs": runs.syncs,
                "wakeups": runs.wakeups,
                "polls": runs.polls,
                "indexed": runs.indexed,
                "log_trimmed": conns.trim(source, active),
            }
        )
    elif cmd == "trim":
        _print({"trimmed": conns.trim(source, active)})
    elif cmd == "status":
        cursors = conns.cursors.load(v.key for v in versions)
        lag = conns.extractor(source).lag(cursors)
        statuses = describe_versions(
            versions,
            cursors=cursors,
            lag=lag,
            lifecycles=life,
            dead_letters=conns.dead_letters,
            sink=conns.sink,
            alias=alias,
            close=CloseEnough.of(env),
        )
        _print(
            {
                "source": source.name,
                "alias": alias,
                "versions": [s.to_json() for s in statuses],
                # what may still arrive when it commits; it holds back nothing committed
                "open_transactions": list(lag.open_transactions),
                "change_log": lag.log,
            }
        )
    elif cmd == "validate":
        (version,) = pick(versions, [args.version])
        report = validate(
            version,
            extractor=conns.extractor(source),
            sink=conns.sink,
            dead_letters=conns.dead_letters,
            cursors=conns.cursors,
            thresholds=Thresholds.of(env),
        )
        life.record(report)
        _print(report.to_json())
        return 0 if report.passed else 1
    elif cmd == "cut-over":
        (version,) = pick(versions, [args.version])
        with conns.lanes.hold([version]):
            previous = cut_over(life, version, alias, conns.sink)
        _print({"alias": alias, "index": version.index, "previous": previous})
    elif cmd == "retire":
        (version,) = pick(versions, [args.version])
        with conns.lanes.hold([version]):
            when = retire(life, version, alias, conns.sink, timedelta(hours=args.grace_hours))
        _print({"retired": version.key, "index_deleted_after": when.isoformat()})
    elif cmd == "replay":
        chosen = pick(active, args.only)
        with conns.lanes.hold(chosen):
            results = replay_dead_letters(
                chosen, extractor=conns.extractor(source), sink=conns.sink, dead_letters=conns.dead_letters
            )
        _print({k: vars(r) for k, r in results.items()})
    elif cmd == "reconcile":
        chosen = pick(active, args.only)
        with conns.lanes.hold(chosen):  # repairs overwrite: no sync may write meanwhile
            drifts = reconcile(
                chosen,
                conns.extractor(source),
                conns.sink,
                repair=not args.report_only,
                dead_letters=conns.dead_letters,
            )
        deleted = [] if args.report_only else delete_expired(life, conns.sink)
        _print(
            {
                "versions": {
                    k: {"summary": d.describe(), **d.counts, "repaired": d.repaired}
                    for k, d in drifts.items()
                },
                "deleted_indices": deleted,
            }
        )
        if args.report_only and not all(d.ok for d in drifts.values()):
            return 1
    return 0


def _tracking(source: Source[Any], verb: str, *, force: bool = False) -> int:
    if source.tracking is None:
        raise ConfigError(
            f"source {source.name!r} declares no tracking; add tracking=Tracking(...) to use change capture"
        )
    if verb == "plan":
        print(source.tracking.plan(), end="")
        return 0
    env = Declared.read()
    name = "TRACKING_DATABASE_URL" if env.tracking_database_url else "SOURCE_DATABASE_URL"
    engine = make_engine(env.tracking_url())
    try:
        return _run_tracking(source, source.tracking, verb, engine, force=force)
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


def _run_tracking(source: Source[Any], tracking: Tracking, verb: str, engine: Engine, *, force: bool) -> int:
    if verb == "apply":
        tracking.apply(engine)
        print(f"tracking of {source.name!r} applied")
    elif verb == "remove":
        tracking.remove(engine, force=force)
        print(f"tracking of {source.name!r} removed")
    else:
        installed = tracking.installed(engine)
        print(f"tracking of {source.name!r}: {'installed' if installed else 'not installed'}")
        for gap in tracking.disabled(engine):
            print(f"warning: trigger {gap}: changes it should log are lost (run tracking apply)")
        return 0 if installed else 1
    return 0


def _print(data: dict[str, Any]) -> None:
    print(orjson.dumps(data, default=str).decode())
