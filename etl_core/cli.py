"""``pg-opensearch-sync`` (or ``python -m etl_core``): any source, from a shell, without Dagster.

    pg-opensearch-sync --source myproject.search:ORDERS tracking plan
    pg-opensearch-sync --source myproject.search:ORDERS --versions myproject.search:VERSIONS sync
    pg-opensearch-sync --source … --versions … status
    pg-opensearch-sync --source … --versions … validate v2
    pg-opensearch-sync --source … --versions … cut-over v2

``--source`` names a :class:`~etl_core.Source` (``package.module:ATTR``), ``--versions`` a sequence
of :class:`~etl_core.IndexVersion`. Settings come from the environment (``etl_core.settings``);
``ETL_INDEX_PREFIX`` goes before every index name and the read alias, as in Dagster. Every
command is one call of :class:`~etl_core.operations.steps.Operations`, the same the Dagster jobs make,
so both doors choose versions, lock lanes and record outcomes alike.

Output: one JSON object on stdout (``tracking plan`` prints the SQL to hand to a DBA).
Exit codes: 0 done; 1 a clear error (the message says what to fix) or a check that did not pass
(``validate``, ``reconcile --report-only`` with drift, ``tracking status`` when not installed);
2 a usage error (a command, option or version that does not exist, a missing ``--versions``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from etl_core.errors import ConfigError, EtlError
from etl_core.flow.collector import tune_for_syncs
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion, pick, validate_versions, with_prefix
from etl_core.operations.connect import Connections
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.steps import Operations, tracking_action
from etl_core.operations.validation import Thresholds
from etl_core.settings import Declared, make_engine
from etl_core.state.lanes import LaneBusy
from etl_core.state.migrations import migrate

PROG = "pg-opensearch-sync"


class UsageError(ConfigError):
    """What the user typed names nothing that exists: exit 2, as argparse does."""


def load_object(spec: str, what: str) -> Any:
    """``package.module:ATTR`` → the object, or a UsageError that says what was wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--{what} {spec!r} must look like package.module:ATTR")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--{what}: cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"--{what}: module {module_name!r} has no attribute {attr!r}") from None


def _source(spec: str) -> Source[Any]:
    found = load_object(spec, "source")
    if not isinstance(found, Source):
        raise UsageError(f"--source {spec!r} is a {type(found).__name__}, not an etl_core.Source")
    return found


def _versions(spec: str | None, source: Source[Any], prefix: str) -> list[IndexVersion[Any]]:
    if spec is None:
        raise UsageError("this command needs --versions package.module:ATTR (a list of IndexVersion)")
    found = load_object(spec, "versions")
    versions = list(found) if isinstance(found, Sequence) else []
    if not versions or not all(isinstance(v, IndexVersion) for v in versions):
        raise UsageError(f"--versions {spec!r} must be a non-empty sequence of etl_core.IndexVersion")
    versions = with_prefix(versions, prefix)
    validate_versions(versions, source.fields)
    return versions


def _named(ops: Operations, keys: Sequence[str]) -> None:
    """A version the command names must be declared (a usage error otherwise)."""
    try:
        pick(ops.versions, keys)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


# --- one handler per command: (arguments, operations, settings) → exit code ---

Handler = Callable[[argparse.Namespace, Operations, Declared], int]


def _sync(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, args.only)
    result = ops.sync(ops.chosen(args.only), max_pages=args.max_pages).report()
    return _print({**result, "log_trimmed": ops.trim()})


def _follow(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    runs = ops.follow(ops.chosen(), window_s=args.seconds, debounce_s=args.debounce)
    return _print(
        {
            "syncs": runs.syncs,
            "wakeups": runs.wakeups,
            "polls": runs.polls,
            "indexed": runs.indexed,
            "log_trimmed": ops.trim(),
        }
    )


def _trim(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    return _print({"trimmed": ops.trim()})


def _status(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    return _print(ops.status(CloseEnough.of(env)))


def _validate(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, [args.version])
    report, recorded_at = ops.validate(args.version, Thresholds.of(env))
    _print({**report.to_json(), "recorded_at": recorded_at.isoformat()})
    return 0 if report.passed else 1


def _cut_over(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, [args.version])
    previous = ops.cut_over(args.version)
    return _print({"alias": ops.alias, "index": ops.version(args.version).index, "previous": previous})


def _retire(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, [args.version])
    when = ops.retire(args.version, timedelta(hours=args.grace_hours))
    return _print({"retired": args.version, "index_deleted_after": when.isoformat()})


def _replay(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, args.only)
    return _print({k: vars(r) for k, r in ops.replay(args.only).items()})


def _reconcile(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    _named(ops, args.only)
    drifts, deleted = ops.reconcile(args.only, repair=not args.report_only)
    _print({"versions": {k: d.to_json() for k, d in drifts.items()}, "deleted_indices": deleted})
    return 1 if args.report_only and not all(d.ok for d in drifts.values()) else 0


def _migrate(args: argparse.Namespace, ops: Operations, env: Declared) -> int:
    before, after = migrate(ops.conns.state)
    return _print({**ops.conns.describe_state(), "from_version": before, "to_version": after})


def _tracking(args: argparse.Namespace, source: Source[Any], env: Declared) -> int:
    if args.verb == "plan":
        if source.tracking is None:
            raise ConfigError(
                f"source {source.name!r} declares no tracking; "
                "add tracking=Tracking(...) to use change capture"
            )
        print(source.tracking.plan(), end="")
        return 0
    engine = make_engine(env.tracking_url())
    try:
        variable = "TRACKING_DATABASE_URL" if env.tracking_database_url else "SOURCE_DATABASE_URL"
        outcome = tracking_action(source, engine, args.verb, force=args.force, variable=variable)
    finally:
        engine.dispose()
    for gap in outcome["disabled_triggers"]:
        logging.warning("trigger %s: changes it should log are lost (run tracking apply)", gap)
    _print(outcome)
    return 0 if outcome["installed"] or args.verb == "remove" else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sync any source to OpenSearch from a shell, without Dagster "
        "(the same cursors, dead letters and validations the Dagster jobs use).",
        epilog="Each command has --help. Output is JSON. Exit codes: 0 done, 1 an error or a failed "
        "check, 2 usage.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_own_version()}")
    parser.add_argument("--source", required=True, help="package.module:ATTR of an etl_core.Source")
    parser.add_argument("--versions", help="package.module:ATTR of a sequence of etl_core.IndexVersion")
    parser.add_argument("--verbose", action="store_true", help="debug logs, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        return p

    tracking = sub.add_parser("tracking", help="the source's generated change capture (plan prints SQL)")
    tracking.set_defaults(handler=None)
    tracking.add_argument("verb", choices=["plan", "apply", "remove", "status"])
    tracking.add_argument(
        "--force", action="store_true", help="remove: drop the log even if it holds unread entries"
    )
    s = command("sync", _sync, "bring the versions up to the source, in one lane (one read for all)")
    s.add_argument("only", nargs="*", metavar="VERSION", help="sync only these (default: all not retired)")
    s.add_argument("--max-pages", type=int, default=None, help="stop after this many pages")
    f = command("follow", _follow, "sync on every change notification until the window ends")
    f.add_argument("--seconds", type=float, default=300.0, help="how long to follow (the window)")
    f.add_argument("--debounce", type=float, default=0.05, help="wait for more changes this long")
    command("migrate", _migrate, "bring the source's state tables to this release (every command does)")
    command("trim", _trim, "delete change-log entries every version not retired has read")
    command("status", _status, "per version: lifecycle, cursor, lag, open dead letters, validation")
    v = command("validate", _validate, "compare every document with the source; record the result")
    v.add_argument("version")
    c = command("cut-over", _cut_over, "point the read alias at a validated version (atomic)")
    c.add_argument("version")
    r = command("retire", _retire, "stop syncing a version; reconcile deletes its index after a grace period")
    r.add_argument("version")
    r.add_argument("--grace-hours", type=float, default=24.0)
    p = command("replay", _replay, "re-read dead-lettered rows by key and index them again")
    p.add_argument("only", nargs="*", metavar="VERSION", help="default: all not retired")
    k = command(
        "reconcile", _reconcile, "walk both sides' keys; repair drift; delete expired retired indices"
    )
    k.add_argument("only", nargs="*", metavar="VERSION", help="default: all not retired")
    k.add_argument("--report-only", action="store_true", help="count the drift, repair nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    # the client and urllib3 log every failed attempt with a traceback; the sink logs its own
    # retries (sink_retry) and ends with one line that names the cause: theirs only when asked
    for noisy in ("opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    tune_for_syncs()  # this process is the command line's own (etl_core.flow.collector)
    try:
        env = Declared.read()
        source = _source(args.source)
        if args.handler is None:
            return _tracking(args, source, env)
        versions = _versions(args.versions, source, env.etl_index_prefix)
        conns = Connections(env.services(), source.name)
        try:
            if args.handler is not _migrate:
                conns.state.create()  # creates or migrates them
            ops = Operations(conns, source, versions, f"{env.etl_index_prefix}{source.read_alias}")
            code: int = args.handler(args, ops, env)
            return code
        finally:
            conns.close()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except LaneBusy as exc:
        print(
            f"error: {exc} (a sync, a follower or a Dagster run holds it; try again later)", file=sys.stderr
        )
        return 1
    except EtlError as exc:
        if args.verbose:
            logging.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an unmapped failure: one line, the traceback on request
        if args.verbose:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"error: unexpected {type(exc).__name__}: {first} (run with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


def run() -> None:
    """The console script ``pg-opensearch-sync``."""
    sys.exit(main())


def _own_version() -> str:
    try:
        return version("pg-opensearch-sync")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print(data: dict[str, Any]) -> int:
    print(orjson.dumps(data, default=str).decode())
    return 0
