"""PostgreSQL-backed state: dead letters and cursors, in the project's own schema.

The state schema may live in the source database or elsewhere (``STATE_DATABASE_URL``); the
extraction role needs no write access to the source tables either way. Each source has tables of
its own (``<schema>.<source>__cursors``, ``…__dead_letters``, …, beside its ``<source>_changes``
log), so two sources may both have a version ``v1``; the double underscore, which no source name
holds, keeps one source's names from ever being another's (``pypi_log`` + ``_cursors`` was the
``pypi`` source's ``_log_cursors``). :mod:`etl_core.state.migrations` brings the state of an earlier
release to this layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Engine,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from etl_core.errors import ConfigError, StateUnavailable
from etl_core.model.cursor import Cursor, LogCursor, Position
from etl_core.model.records import DeadLetter
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry, refused_connection, transient_db_error
from etl_core.state.migrations import migrate
from etl_core.state.tables import (
    LONGEST_SUFFIX,
    MAX_IDENTIFIER,
    SEP,
    columns_of,
    legacy_log_cursors,
    tables_of,
)

_CREATED: set[tuple[str, str, str]] = set()
T = TypeVar("T")


def _rows(engine: Engine, stmt: Executable) -> Sequence[Any]:
    with engine.connect() as conn:
        return conn.execute(stmt).all()


def _execute(engine: Engine, stmt: Executable, rows: list[dict[str, Any]] | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(stmt, rows)


class StateSchema:
    """Creates (idempotently) and names one source's state tables; every state operation goes
    through :meth:`call`, so what escapes is one of the project's errors.

    ``scope`` is the source's name: the tables are ``<schema>.<scope>__dead_letters`` and so on.
    """

    def __init__(
        self,
        engine: Engine,
        scope: str,
        schema: str = "etl_state",
        backoff: Backoff = DEFAULT_BACKOFF,
        variable: str = "STATE_DATABASE_URL",
    ) -> None:
        """``variable`` names the setting the engine's URL came from, for errors."""
        if not scope.isidentifier():
            raise ConfigError(f"state scope {scope!r} must be a source name (letters, digits, underscores)")
        if SEP in scope or scope.endswith("_"):
            fixed = "_".join(part for part in scope.split("_") if part)
            raise ConfigError(
                f"source name (Source.name) {scope!r} must not hold '__' nor end with '_': its state "
                f"tables are <name>__cursors, … and must never be another source's; rename it "
                f"(e.g. {fixed!r})"
            )
        if len(scope.encode()) + LONGEST_SUFFIX > MAX_IDENTIFIER:
            raise ConfigError(
                f"source name (Source.name) {scope!r} is longer than "
                f"{MAX_IDENTIFIER - LONGEST_SUFFIX} bytes: its state tables' names would be cut "
                "by PostgreSQL; use a shorter name"
            )
        self.engine = engine
        self.scope = scope
        self.schema = schema
        self.backoff = backoff
        self.variable = variable
        (
            self.meta,
            self.dead_letters,
            self.cursors,
            self.log_cursors,
            self.validations,
            self.retirements,
            self.shard_plans,
        ) = tables_of(schema, scope)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` with retries on connection failures; then a clear error, no traceback."""
        try:
            return call_with_retry(
                fn, retry_on=transient_db_error, backoff=self.backoff, log_as="state_retry", what=what
            )
        except DBAPIError as exc:
            where = f"the state schema {self.schema!r} ({what})"
            refused = refused_connection(exc, self.variable)
            if refused is not None:
                raise refused from None
            if transient_db_error(exc):
                raise StateUnavailable(
                    f"{where} could not be reached after {self.backoff.attempts} attempts: "
                    f"{type(exc.orig).__name__}. Check {self.variable}; no cursor was moved."
                ) from None
            # only a refusal is about privileges; anything else (a missing column) is not
            hint = (
                "The state role needs CREATE on the database (or an existing schema) and write access to it"
                if getattr(exc.orig, "sqlstate", None) == "42501"
                else f"The state tables are not as this release made them (see {self.schema}.state_versions)"
            )
            raise ConfigError(
                f"{where} was refused: {type(exc.orig).__name__}: "
                f"{str(exc.orig).strip().splitlines()[0] if str(exc.orig) else ''}. {hint}"
            ) from None

    def create(self) -> None:
        """Creates or migrates the tables (:func:`etl_core.state.migrations.migrate`), so ``status``,
        ``sync`` and every Dagster run upgrade the state on first use. Done once per database,
        schema and source per process: the sensor, the schedule and every run call it, and each
        call would otherwise cost a round of catalogue queries."""
        key = (self.engine.url.render_as_string(hide_password=True), self.schema, self.scope)
        if key in _CREATED:
            return
        migrate(self)
        _CREATED.add(key)


PAYLOAD_TEXT_LIMIT = 64 * 1024
"""Characters of one text value a dead letter keeps; longer ones keep a preview and their length."""
_PREVIEW = 1024


def _bounded(value: Any) -> Any:
    """``value`` with every long text (or bytes) cut to a preview. A dead letter's payload is for
    reading (replay re-reads the row by key), and one letter of a 101 MB row used to hold the
    row several times over while it was encoded: 10 copies of the row at once for a sync whose
    versions all refused it (``benchmarks/huge_row.py``)."""
    if isinstance(value, str | bytes) and len(value) > PAYLOAD_TEXT_LIMIT:
        shown = value[:_PREVIEW] if isinstance(value, str) else value[:_PREVIEW].decode(errors="replace")
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{shown}… [{len(value)} {unit}; cut in the dead letter]"
    if isinstance(value, Mapping):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


def _payload(payload: Mapping[str, Any] | None) -> Any:
    # Round-trip through orjson: datetimes and decimals become JSON the database accepts.
    return None if payload is None else orjson.loads(orjson.dumps(_bounded(payload), default=str))


class PostgresDeadLetterStore:
    """One open letter per (version, key): a repeat failure bumps ``attempts`` and the reason."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state

    def put(self, letters: Sequence[DeadLetter]) -> None:
        table = self.state.dead_letters
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.version, table.c.key],
            index_where=table.c.resolved_at.is_(None),
            set_={
                "reason": stmt.excluded.reason,
                "payload": stmt.excluded.payload,
                "changed_at": stmt.excluded.changed_at,
                "attempts": table.c.attempts + 1,
                "last_failed_at": func.now(),
            },
        )
        rows = [
            {
                "version": d.version,
                "key": d.key,
                "changed_at": d.changed_at,
                "reason": d.reason,
                "payload": _payload(d.payload),
            }
            for d in letters
        ]
        self.state.call("writing dead letters", lambda: _execute(self.state.engine, stmt, rows))

    def count_open(self, version: str) -> int:
        table = self.state.dead_letters
        stmt = select(func.count()).where(table.c.version == version, table.c.resolved_at.is_(None))
        return int(self.state.call("counting dead letters", lambda: _rows(self.state.engine, stmt))[0][0])

    def open_keys(self, versions: Iterable[str]) -> dict[str, set[str]]:
        table = self.state.dead_letters
        wanted = list(versions)
        found: dict[str, set[str]] = {v: set() for v in wanted}
        stmt = select(table.c.version, table.c.key).where(
            table.c.version.in_(wanted), table.c.resolved_at.is_(None)
        )
        for version, key in self.state.call(
            "reading open dead letters", lambda: _rows(self.state.engine, stmt)
        ):
            found[version].add(key)
        return found

    def resolve(self, version: str, keys: Sequence[str]) -> None:
        """A later write of these keys succeeded (replay, or simply fresher data)."""
        if not keys:
            return
        table = self.state.dead_letters
        stmt = (
            table.update()
            .where(table.c.version == version, table.c.key.in_(list(keys)), table.c.resolved_at.is_(None))
            .values(resolved_at=func.now())
        )
        self.state.call("resolving dead letters", lambda: _execute(self.state.engine, stmt))

    def open_letters(self, version: str | None = None) -> list[dict[str, Any]]:
        table = self.state.dead_letters
        stmt = select(table).where(table.c.resolved_at.is_(None)).order_by(table.c.version, table.c.key)
        if version is not None:
            stmt = stmt.where(table.c.version == version)
        rows = self.state.call("reading dead letters", lambda: _rows(self.state.engine, stmt))
        return [dict(r._mapping) for r in rows]


class PostgresCursorStore:
    """Cursors in tables (one per kind of position); ``save`` is a monotonic merge done by the
    database itself, so two writers racing on one version can only ever move it forward."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state
        self._built: tuple[Executable, Executable] | None = None

    def versions(self) -> list[str]:
        """Every version that has a cursor (of either kind)."""
        by_time, by_log = self.state.cursors, self.state.log_cursors
        stmt = select(by_time.c.version).union(select(by_log.c.version))
        return sorted(
            r[0] for r in self.state.call("listing cursors", lambda: _rows(self.state.engine, stmt))
        )

    def load(self, versions: Iterable[str]) -> dict[str, Position | None]:
        wanted = list(versions)
        by_time, by_log = self.state.cursors, self.state.log_cursors
        found: dict[str, Position | None] = dict.fromkeys(wanted)
        stmt = select(by_time.c.version, by_time.c.changed_at, by_time.c.key).where(
            by_time.c.version.in_(wanted)
        )
        for v, changed_at, key in self.state.call("reading cursors", lambda: _rows(self.state.engine, stmt)):
            found[v] = Cursor(changed_at, key)
        stmt = select(by_log.c.version, by_log.c.position).where(by_log.c.version.in_(wanted))
        for v, position in self.state.call("reading cursors", lambda: _rows(self.state.engine, stmt)):
            found[v] = LogCursor.from_json(position)
        missing = [v for v, c in found.items() if c is None]
        if missing:
            found.update(self._legacy(missing))
        return found

    def _legacy(self, versions: list[str]) -> dict[str, Position]:
        """Positions the xmin-bounded reader saved, read as snapshots (:meth:`LogCursor.from_json`)
        so an upgraded deployment goes on where it stood instead of walking everything again.
        The next save writes them to the new table. A table of that name without ``phase`` is
        not one: it is the ``_cursors`` of a source named ``<scope>_log`` not yet migrated."""
        legacy = legacy_log_cursors(self.state.schema, self.state.scope)

        def read() -> Sequence[Any]:
            with self.state.engine.connect() as conn:
                if "phase" not in columns_of(conn, legacy):
                    return []
                stmt = select(legacy.c.version, legacy.c.phase, legacy.c.major, legacy.c.minor)
                return conn.execute(stmt.where(legacy.c.version.in_(versions))).all()

        found: dict[str, Position] = {}
        for v, phase, major, minor in self.state.call("reading cursors", read):
            data = {"backfill_key": major, "bound": minor} if phase == 0 else {"xid": major}
            found[v] = LogCursor.from_json(data)
        return found

    def save(self, cursors: Mapping[str, Position]) -> None:
        by_time = [
            {"version": v, "changed_at": c.changed_at, "key": c.key}
            for v, c in cursors.items()
            if isinstance(c, Cursor)
        ]
        by_log = []
        for v, c in cursors.items():
            if isinstance(c, LogCursor):
                head, key, tail = c.rank_columns()
                by_log.append({"version": v, "head": head, "key": key, "tail": tail, "position": c.to_json()})
        time_upsert, log_upsert = self._upserts()
        if by_time:
            self.state.call("saving cursors", lambda: _execute(self.state.engine, time_upsert, by_time))
        if by_log:
            self.state.call("saving cursors", lambda: _execute(self.state.engine, log_upsert, by_log))

    def _upserts(self) -> tuple[Executable, Executable]:
        """The two monotonic upserts, built once: a sync saves after every page, and building
        the statement cost more than running it."""
        if self._built is None:
            table = self.state.cursors
            by_time = insert(table)
            by_time = by_time.on_conflict_do_update(
                index_elements=[table.c.version],
                set_={
                    "changed_at": by_time.excluded.changed_at,
                    "key": by_time.excluded.key,
                    "saved_at": func.now(),
                },
                where=tuple_(table.c.changed_at, table.c.key)
                < tuple_(by_time.excluded.changed_at, by_time.excluded.key),
            )
            log = self.state.log_cursors
            by_log = insert(log)
            by_log = by_log.on_conflict_do_update(
                index_elements=[log.c.version],
                set_={
                    "head": by_log.excluded.head,
                    "key": by_log.excluded.key,
                    "tail": by_log.excluded.tail,
                    "position": by_log.excluded.position,
                    "saved_at": func.now(),
                },
                where=tuple_(log.c.head, log.c.key, log.c.tail)
                < tuple_(by_log.excluded.head, by_log.excluded.key, by_log.excluded.tail),
            )
            self._built = (by_time, by_log)
        return self._built


class PostgresShardPlanStore:
    """The unfinished sharded backfill of each lane, until its hand-over: a new run of the same
    lane resumes that plan (its bound, its ranges, its shards' checkpoints) instead of cutting a
    new one and walking everything again."""

    def __init__(self, state: StateSchema) -> None:
        self.state = state

    def claim(self, lane: str, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Record ``plan`` for ``lane`` unless one is recorded already; the recorded one."""
        table = self.state.shard_plans
        stmt = insert(table).values(lane=lane, plan=dict(plan)).on_conflict_do_nothing()
        read = select(table.c.plan).where(table.c.lane == lane)

        def claim() -> dict[str, Any]:
            with self.state.engine.begin() as conn:
                conn.execute(stmt)
                return dict(conn.execute(read).scalar_one())

        return self.state.call("recording a shard plan", claim)

    def get(self, lane: str) -> dict[str, Any] | None:
        table = self.state.shard_plans
        stmt = select(table.c.plan).where(table.c.lane == lane)
        rows = self.state.call("reading a shard plan", lambda: _rows(self.state.engine, stmt))
        return dict(rows[0][0]) if rows else None

    def drop(self, lane: str) -> None:
        table = self.state.shard_plans
        stmt = table.delete().where(table.c.lane == lane)
        self.state.call("dropping a shard plan", lambda: _execute(self.state.engine, stmt))
