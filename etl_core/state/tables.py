"""The state tables' definitions, one function per layout: what :mod:`etl_core.state.stores` reads
and writes and what :mod:`etl_core.state.migrations` creates and renames."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

SEP = "__"
"""Between a source's name and the kind of state table: no source name holds it (nor ends in
``_``), so ``<a>__<kind>`` is never ``<b>__<other kind>`` for two sources ``a`` and ``b``."""
LONGEST_SUFFIX = len("__validations_version")  # the longest name derived from a scope (…_id_seq too)
MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names, and cut names collide


def tables_of(
    schema: str, scope: str, sep: str = SEP
) -> tuple[MetaData, Table, Table, Table, Table, Table, Table]:
    """The state tables of ``scope``; ``sep="_"`` gives the names of the releases before
    :mod:`etl_core.state.migrations` (its step 1), whose validations index SQLAlchemy named."""
    meta = MetaData(schema=schema)
    dead = Table(
        f"{scope}{sep}dead_letters",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("version", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("changed_at", DateTime(timezone=True)),
        Column("reason", Text, nullable=False),
        Column("payload", JSONB),
        Column("attempts", Integer, nullable=False, server_default="1"),
        Column("first_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("last_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("resolved_at", DateTime(timezone=True)),
    )
    Index(
        f"{scope}{sep}dead_letters_open",
        dead.c.version,
        dead.c.key,
        unique=True,
        postgresql_where=dead.c.resolved_at.is_(None),
    )
    cursors = Table(
        f"{scope}{sep}cursors",
        meta,
        Column("version", Text, primary_key=True),
        Column("changed_at", DateTime(timezone=True), nullable=False),
        Column("key", JSONB, nullable=False),
        Column("saved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # A change-log position (LogCursor) as the three columns its order compares (head, key,
    # tail: LogCursor.rank_columns), so that a save is a monotonic merge done by the database,
    # and the position itself as JSON.
    log_cursors = Table(
        f"{scope}{sep}feed_cursors",
        meta,
        Column("version", Text, primary_key=True),
        Column("head", ARRAY(BigInteger), nullable=False),
        Column("key", JSONB(none_as_null=False), nullable=False),
        Column("tail", ARRAY(BigInteger), nullable=False),
        Column("position", JSONB, nullable=False),
        Column("saved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    validations = Table(
        f"{scope}{sep}validations",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("version", Text, nullable=False, index=sep != SEP),
        Column("passed", Boolean, nullable=False),
        Column("report", JSONB, nullable=False),
        Column("validated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    if sep == SEP:
        Index(f"{scope}{sep}validations_version", validations.c.version)
    retirements = Table(
        f"{scope}{sep}retirements",
        meta,
        Column("version", Text, primary_key=True),
        Column("index_name", Text, nullable=False),
        Column("retired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("delete_after", DateTime(timezone=True), nullable=False),
        Column("deleted_at", DateTime(timezone=True)),
    )
    shard_plans = Table(
        f"{scope}{sep}shard_plans",
        meta,
        Column("lane", Text, primary_key=True),
        Column("plan", JSONB, nullable=False),
        Column("planned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return meta, dead, cursors, log_cursors, validations, retirements, shard_plans


def legacy_log_cursors(schema: str, scope: str) -> Table:
    """Where the xmin-bounded reader kept its positions: read once, never created, written nor
    renamed (the name is the old one, so it may be another source's ``_cursors``: see
    :meth:`PostgresCursorStore._legacy`)."""
    return Table(
        f"{scope}_log_cursors",
        MetaData(schema=schema),
        Column("version", Text, primary_key=True),
        Column("phase", Integer),
        Column("major", JSONB),
        Column("minor", BigInteger),
    )


_COLUMNS = text(
    "SELECT attname FROM pg_attribute"
    " WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
)


def columns_of(conn: Connection, table: Table) -> set[str]:
    """The columns ``table`` has in the database (none if it does not exist). They tell whose a
    table of an old name is where two sources' old names were one (``pypi_log`` + ``_cursors``,
    ``pypi`` + ``_log_cursors``)."""
    name = conn.dialect.identifier_preparer.format_table(table)
    return set(conn.execute(_COLUMNS, {"table": name}).scalars())
