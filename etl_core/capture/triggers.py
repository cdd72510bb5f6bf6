"""Change capture, declared and generated: PostgreSQL appends one log entry per statement.

A :class:`Tracking` names a source's root table and key and, per joined table, which column to log
and the path from that value to root keys. From it this module generates idempotent DDL: a log
table in the state schema and, per tracked table, one ``SECURITY DEFINER`` trigger function and
its triggers. Each INSERT, UPDATE or DELETE statement appends **one** entry holding the logged
values it touched as an array (``keys``), stamped with the writing transaction's id, and notifies
the source's channel once; a TRUNCATE appends one entry without keys (op ``T``). Tracking never
updates a user row: a parent rename is one log entry, however many children it has; the reader
resolves it to root keys through the path.

Cost is kept to what a statement must pay: the statement-level UPDATE trigger reads only the NEW
transition table (capturing OLD rows as well doubled what the trigger cost); the rare UPDATE that
changes the logged column itself is caught by a row-level ``AFTER UPDATE OF <column>`` trigger
with a ``WHEN`` clause, which logs the old value and costs nothing when the column is not set.
Every trigger is ``ENABLE ALWAYS``: it fires under ``session_replication_role = replica`` too
(logical-replication apply workers, ``pg_restore``), so those writes are not silent gaps. What
disables triggers outright (``ALTER TABLE … DISABLE TRIGGER``, ``pg_restore --disable-triggers``)
is reported by :meth:`Tracking.disabled`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    Identity,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from etl_core.errors import ConfigError


class TrackingInUse(ConfigError):
    """``remove`` was asked while the change log still holds entries a version may not have read."""


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped
_PREPARER = _DIALECT.identifier_preparer
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
_MAX_IDENTIFIER = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names
_OPS = {"INSERT": "I", "UPDATE": "U", "DELETE": "D", "TRUNCATE": "T"}
# One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
_EVENTS = (
    ("ins", "INSERT", "REFERENCING NEW TABLE AS new_rows", "new_rows"),
    ("upd", "UPDATE", "REFERENCING NEW TABLE AS new_rows", "new_rows"),
    ("del", "DELETE", "REFERENCING OLD TABLE AS old_rows", "old_rows"),
)
_SUFFIXES = ("ins", "upd", "del", "key", "trunc")
"""The triggers per table: the three statement-level ones above, the row-level one that logs a
changed logged column's old value, and the TRUNCATE one."""
_BODY_TAG = "$etl_track$"


def _q(name: str) -> str:
    return _PREPARER.quote(name)


def _table(table: Table) -> str:
    return _PREPARER.format_table(table)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Hop:
    """Rows of ``table`` whose column ``match`` equals the value in hand; their column ``to`` is the
    next value."""

    table: Table
    match: str
    to: str


@dataclass(frozen=True, slots=True)
class Tracked:
    """A joined table: which of its columns is logged, and the path from that value to root keys."""

    table: Table
    column: str  # logged from NEW and OLD rows
    path: tuple[Hop, ...] = ()  # () means the logged value IS a root key (e.g. a link table's product_id)


@dataclass(frozen=True, slots=True)
class Tracking:
    """The change capture of one source. The root table is tracked implicitly (its key, no path)."""

    source: str
    root: Table
    key: str
    joined: tuple[Tracked, ...] = ()
    schema: str = "etl_state"
    notify: bool = True
    """``pg_notify`` once per statement, so a follower wakes within milliseconds. PostgreSQL
    refuses ``PREPARE TRANSACTION`` after a ``NOTIFY``: if your applications use two-phase
    commit on these tables, set False; followers then poll (``ETL_FOLLOW_POLL_S``)."""
    _log: Table = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"tracking {self.source!r}"
        if not isinstance(self.source, str) or not _SOURCE_NAME.fullmatch(self.source):
            raise ConfigError(
                f"{where}: source must be a lower-case identifier ([a-z][a-z0-9_]{{0,40}}), "
                f"got {self.source!r}; rename it"
            )
        if not self.schema or len(self.schema.encode()) > _MAX_IDENTIFIER:
            raise ConfigError(f"{where}: schema {self.schema!r} must be 1 to {_MAX_IDENTIFIER} bytes long")
        _need(where, "key", self.root, self.key)
        seen: dict[str, str] = {self.root.fullname: "the root"}
        names: dict[str, str] = {self.root.name: self.root.fullname}
        for i, tracked in enumerate(self.joined):
            at = f"{where}: joined[{i}] ({tracked.table.fullname})"
            if tracked.table is self.root or tracked.table.fullname == self.root.fullname:
                raise ConfigError(
                    f"{at}: the root table {self.root.fullname} is tracked implicitly by its key "
                    f"{self.key!r}; remove it from joined"
                )
            if tracked.table.fullname in seen:
                first = seen[tracked.table.fullname]
                raise ConfigError(
                    f"{at}: table {tracked.table.fullname} is already tracked as {first}; "
                    "declare each table once (one logged column per table)"
                )
            if names.get(tracked.table.name, tracked.table.fullname) != tracked.table.fullname:
                raise ConfigError(
                    f"{at}: another tracked table is also named {tracked.table.name!r} (in another "
                    "schema); the log and the trigger functions are named by table name, track only one"
                )
            seen[tracked.table.fullname] = f"joined[{i}]"
            names[tracked.table.name] = tracked.table.fullname
            _need(at, "Tracked.column", tracked.table, tracked.column)
            for j, hop in enumerate(tracked.path):
                _need(f"{at} path[{j}]", "Hop.match", hop.table, hop.match)
                _need(f"{at} path[{j}]", "Hop.to", hop.table, hop.to)
        for i, tracked in enumerate(self.joined):
            for j, hop in enumerate(tracked.path):
                if hop.table.fullname not in seen:
                    raise ConfigError(
                        f"{where}: joined[{i}] ({tracked.table.fullname}) path[{j}] goes through "
                        f"{hop.table.fullname}, which is not tracked, so its changes would be missed; "
                        f"add Tracked({hop.table.name}, ...) to joined"
                    )
            last = tracked.path[-1] if tracked.path else None
            if last is not None and last.table.fullname == self.root.fullname and last.to != self.key:
                raise ConfigError(
                    f"{where}: joined[{i}] ({tracked.table.fullname}) path ends on the root table at "
                    f"column {last.to!r}; it must end at the root key: to={self.key!r}"
                )
        for table in self._tables():
            function = self._function_name(table)
            if len(function.encode()) > _MAX_IDENTIFIER:
                raise ConfigError(
                    f"{where}: trigger function name {function!r} is longer than {_MAX_IDENTIFIER} "
                    "bytes; use a shorter source name"
                )
        object.__setattr__(self, "_log", _log_table(self.source, self.schema))

    # -- names -------------------------------------------------------------------------------

    @property
    def log_table(self) -> Table:
        return self._log

    @property
    def channel(self) -> str:
        return f"etl_{self.source}"

    def trigger_names(self) -> tuple[str, ...]:
        return tuple(f"etl_track_{self.source}_{suffix}" for suffix in _SUFFIXES)

    def _function_name(self, table: Table) -> str:
        return f"etl_track_{self.source}_{table.name}"

    def _function(self, table: Table) -> str:
        return f"{_q(self.schema)}.{_q(self._function_name(table))}"

    def _targets(self) -> Iterator[Tracked]:
        yield Tracked(self.root, self.key)
        yield from self.joined

    def _tables(self) -> Iterator[Table]:
        return (t.table for t in self._targets())

    # -- DDL ---------------------------------------------------------------------------------

    def _sections(self) -> list[tuple[str, list[str]]]:
        log = _table(self._log)
        sections = [
            (
                f"Change capture for source {self.source!r}: entries go to {log}, "
                f"NOTIFY channel {self.channel!r}.\n"
                "Tracking never updates a user row.",
                [
                    f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}",
                    _create_table(self._log),
                    *self._upgrade_log(),
                ],
            )
        ]
        for tracked in self._targets():
            sections.append((self._describe(tracked), self._table_ddl(tracked)))
        return sections

    def _upgrade_log(self) -> list[str]:
        """A log created by an earlier release held one key per entry: it gains the array and
        may hold TRUNCATE entries; its unread entries stay readable (the reader takes either).
        Each statement is a no-op on a log of this release, so applying twice changes nothing."""
        log, name = _table(self._log), self._log.name
        return [
            f"ALTER TABLE {log} ADD COLUMN IF NOT EXISTS keys TEXT[]",
            f"ALTER TABLE {log} ALTER COLUMN key DROP NOT NULL",
            # its CHECK named the three operations; this release's table names four (_ops)
            f"ALTER TABLE {log} DROP CONSTRAINT IF EXISTS {_q(name + '_op')}",
        ]

    def _describe(self, tracked: Tracked) -> str:
        name = tracked.table.name
        logged = f"{name}.{tracked.column}"
        head = (
            f"{tracked.table.fullname}: logs {logged} on INSERT, UPDATE and DELETE (one entry per "
            f"statement), its old value when an UPDATE changes it, and TRUNCATE"
        )
        if tracked.table is self.root:
            return f"{head}.\nIt is the root key."
        root_key = f"{self.root.name}.{self.key}"
        if not tracked.path:
            return f"{head}.\nThe logged value is a root key ({root_key})."
        steps = [f"rows of {h.table.name} where {h.match} = value, their {h.to}" for h in tracked.path]
        return f"{head}.\nRoot keys ({root_key}): " + ", then ".join(steps) + "."

    def _table_ddl(self, tracked: Tracked) -> list[str]:
        function = self._function(tracked.table)
        column = _q(tracked.column)
        log, tbl = _table(self._log), _literal(tracked.table.name)
        xid = "pg_current_xact_id()::text::bigint"
        branches = {
            event: (
                f"INSERT INTO {log} (xid, tbl, keys, op)\n"
                f"        SELECT {xid}, {tbl}, a.k, {_literal(_OPS[event])}\n"
                f"        FROM (SELECT array_agg({column}::text) AS k FROM {rows}\n"
                f"              WHERE {column} IS NOT NULL) AS a\n"
                "        WHERE a.k IS NOT NULL;"
            )
            for _, event, _, rows in _EVENTS
        }
        notify = (
            f"    IF FOUND THEN\n        PERFORM pg_notify({_literal(self.channel)}, '');\n    END IF;\n"
            if self.notify
            else ""
        )
        body = (
            "\nBEGIN\n"
            "    IF TG_LEVEL = 'ROW' THEN  -- the logged column itself changed: its old value\n"
            f"        INSERT INTO {log} (xid, tbl, keys, op)\n"
            f"        VALUES ({xid}, {tbl}, ARRAY[OLD.{column}::text], 'U');\n"
            "    ELSIF TG_OP = 'INSERT' THEN\n"
            f"        {branches['INSERT']}\n"
            "    ELSIF TG_OP = 'UPDATE' THEN\n"
            f"        {branches['UPDATE']}\n"
            "    ELSIF TG_OP = 'DELETE' THEN\n"
            f"        {branches['DELETE']}\n"
            "    ELSE  -- TRUNCATE: every row is gone, which ones is not known\n"
            f"        INSERT INTO {log} (xid, tbl, keys, op) VALUES ({xid}, {tbl}, '{{}}', 'T');\n"
            "    END IF;\n" + notify + "    RETURN NULL;\n"
            "END\n"
        )
        if _BODY_TAG in body:  # a quoted identifier could in theory contain it
            raise ConfigError(f"tracking {self.source!r}: a table or column name contains {_BODY_TAG}")
        ddl = [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger\n"
            "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp\n"
            f"AS {_BODY_TAG}{body}{_BODY_TAG}"
        ]
        ins, upd, dlt, key, trunc = self.trigger_names()
        table = _table(tracked.table)
        for name, (_, event, referencing, _) in zip((ins, upd, dlt), _EVENTS, strict=True):
            ddl.append(
                f"CREATE OR REPLACE TRIGGER {_q(name)}\n"
                f"    AFTER {event} ON {table} {referencing}\n"
                f"    FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        ddl.append(
            f"CREATE OR REPLACE TRIGGER {_q(key)}\n"
            f"    AFTER UPDATE OF {column} ON {table}\n"
            f"    FOR EACH ROW WHEN (OLD.{column} IS DISTINCT FROM NEW.{column})\n"
            f"    EXECUTE FUNCTION {function}()"
        )
        ddl.append(
            f"CREATE OR REPLACE TRIGGER {_q(trunc)}\n"
            f"    AFTER TRUNCATE ON {table}\n"
            f"    FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
        # fire under session_replication_role = replica too (replication apply, pg_restore)
        ddl.extend(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {_q(n)}" for n in self.trigger_names())
        return ddl

    def statements(self) -> list[str]:
        """The apply DDL, in order; each statement is idempotent."""
        return [s for _, statements in self._sections() for s in statements]

    def remove_statements(self) -> list[str]:
        out: list[str] = []
        for table in self._tables():
            out.extend(f"DROP TRIGGER IF EXISTS {_q(n)} ON {_table(table)}" for n in self.trigger_names())
            out.append(f"DROP FUNCTION IF EXISTS {self._function(table)}()")
        out.append(f"DROP TABLE IF EXISTS {_table(self._log)}")
        return out

    def plan(self) -> str:
        """The apply DDL as one readable script, with a comment per table."""
        parts = []
        for comment, statements in self._sections():
            header = "\n".join(f"-- {line}" for line in comment.splitlines())
            parts.append(header + "\n" + "\n\n".join(f"{s};" for s in statements))
        return "\n\n".join(parts) + "\n"

    # -- against a database ------------------------------------------------------------------

    def apply(self, engine: Engine) -> None:
        """Install (or bring up to date) in one transaction. Also drops this source's triggers
        left on tables the declaration no longer names, so the log only holds what readers map."""
        with engine.begin() as conn:
            self._lock(conn)
            for statement in self.statements():
                conn.exec_driver_sql(statement)
            self._drop_stale(conn)

    def remove(self, engine: Engine, *, force: bool = False) -> None:
        """Drop triggers, functions and the log in one transaction; user tables keep their rows.
        The state schema stays: it holds the project's other state.

        Refuses (:class:`TrackingInUse`) while the log holds entries: a sync trims what every
        version has been delivered, so what is left may not have reached some version, and would
        be lost with the log. ``force`` drops them anyway."""
        with engine.begin() as conn:
            self._lock(conn)
            left = self._entries(conn)
            if left and not force:
                entries, keys = left
                raise TrackingInUse(
                    f"tracking {self.source!r}: the change log {self._log.fullname} still holds "
                    f"{entries} entries ({keys} keys) that a version may not have read; removing it "
                    "would lose those changes. Sync every version (a sync trims what all have read), "
                    "or remove with --force (then reconcile the versions to repair what they missed)"
                )
            self._drop_stale(conn)
            for statement in self.remove_statements():
                conn.exec_driver_sql(statement)

    def _entries(self, conn: Connection) -> tuple[int, int] | None:
        """(entries, keys) the log holds, or None when it holds none or does not exist."""
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": _table(self._log)}).scalar() is None:
            return None
        log = self._log
        keys = func.coalesce(log.c["keys"], postgresql.array([log.c.key]))
        found = conn.execute(select(func.count(), func.coalesce(func.sum(func.cardinality(keys)), 0))).one()
        return (int(found[0]), int(found[1])) if found[0] else None

    def installed(self, engine: Engine) -> bool:
        """The log table and every declared trigger, pointing at its own function, exist."""
        with engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": _table(self._log)}).scalar() is None:
                return False
            for table in self._tables():
                found = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_trigger"
                        " WHERE tgrelid = to_regclass(:table) AND tgname = ANY(:names)"
                        " AND tgfoid = to_regprocedure(:function)"
                    ),
                    {
                        "table": _table(table),
                        "names": list(self.trigger_names()),
                        "function": f"{self._function(table)}()",
                    },
                ).scalar_one()
                if found != len(_SUFFIXES):
                    return False
        return True

    def disabled(self, engine: Engine) -> list[str]:
        """Triggers of this tracking that will not fire (``DISABLE TRIGGER``, e.g. left by
        ``pg_restore --disable-triggers``) or fire only outside replica mode: each a silent gap."""
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT tgrelid::regclass::text || '.' || tgname, tgenabled FROM pg_trigger"
                    " WHERE tgname = ANY(:names) AND tgenabled <> 'A' ORDER BY 1"
                ),
                {"names": list(self.trigger_names())},
            ).all()
        state = {
            "D": "disabled",
            "O": "not fired under session_replication_role = replica",
            "R": "fired only under session_replication_role = replica",
        }
        return [f"{name}: {state.get(flag, flag)}" for name, flag in rows]

    def _lock(self, conn: Connection) -> None:
        # Two applies at once would race on the catalogue ("tuple concurrently updated").
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"etl_track:{self.source}"})

    def _drop_stale(self, conn: Connection) -> None:
        declared = [_table(t) for t in self._tables()]
        stale = conn.execute(
            text(
                "SELECT t.tgrelid::regclass::text, t.tgname, p.oid::regprocedure::text,"
                "       p.pronamespace = to_regnamespace(:schema)::oid"
                " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                " WHERE t.tgname = ANY(:names) AND NOT t.tgisinternal"
                "   AND t.tgrelid <> ALL(ARRAY(SELECT to_regclass(d) FROM unnest(CAST(:declared AS text[])) d"
                "                              WHERE to_regclass(d) IS NOT NULL))"
            ),
            {"schema": self.schema, "names": list(self.trigger_names()), "declared": declared},
        ).all()
        functions = set()
        for relation, trigger, function, ours in stale:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_q(trigger)} ON {relation}")
            if ours:
                functions.add(function)
        for function in sorted(functions):
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}")


def _need(where: str, role: str, table: Table, column: str) -> None:
    if column not in table.c:
        raise ConfigError(
            f"{where}: {role}={column!r} is not a column of {table.fullname}; "
            f"name one of its columns: {sorted(table.c.keys())}"
        )


def _create_table(table: Table) -> str:
    ddl = str(CreateTable(table, if_not_exists=True).compile(dialect=_DIALECT))
    return "\n".join(line.rstrip().replace("\t", "    ") for line in ddl.strip().splitlines())


def _log_table(source: str, schema: str) -> Table:
    name = f"{source}_changes"
    return Table(
        name,
        MetaData(schema=schema),
        Column("seq", BigInteger, Identity(always=True), nullable=False),
        Column("xid", BigInteger, nullable=False),
        Column("tbl", Text, nullable=False),
        Column("key", Text),  # one key per entry: only entries of an earlier release
        Column("keys", postgresql.ARRAY(Text)),
        Column("op", Text, nullable=False),
        # The writing transaction's start: how old the oldest unread entry is (lag in seconds).
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # Readers page on (xid, seq): every entry of a transaction, in statement order.
        PrimaryKeyConstraint("xid", "seq", name=f"{name}_pkey"),
        CheckConstraint("op IN ('I', 'U', 'D', 'T')", name=f"{name}_ops"),
    )
