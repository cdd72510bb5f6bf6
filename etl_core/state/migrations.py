"""Versioned migrations of the state tables: ordered steps, and one version row per source.

``create_all(checkfirst=True)`` never alters a table that exists, so a change to a state table
would leave every deployment on the old one, silently. Each source's state instead records the
version of its layout in ``<schema>.state_versions`` and :func:`migrate` runs the steps it lacks.

Not Alembic: its version table holds one version per database for one set of tables, while here
every source has tables of its own in a shared schema, named after it and created when the
source is first used, so sources are at different versions (one upgraded by its first ``sync``,
another not run since) and a version is per source: ``state_versions`` has a row per scope.

Where a source stands:

* a row in ``state_versions``: that version;
* no row, but tables of the old names that are this source's (they have their kind's columns):
  the state of a release before versioning, so every step runs, from step 1;
* neither: a new source, whose latest layout is created directly and recorded without running a
  step (the test checks that a migrated layout and a created one are the same, names included).

A version above :data:`LATEST` is a newer release's state: :class:`ConfigError`, nothing touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, Table, Text, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.schema import CreateSchema

from etl_core.errors import ConfigError
from etl_core.logs import event
from etl_core.state.tables import columns_of, tables_of

if TYPE_CHECKING:
    from etl_core.state.stores import StateSchema

Step = Callable[[Connection, str, str], None]
"""One step: ``(conn, schema, scope)``, in the migration's transaction."""

# A table's indexes: name, whether it is the primary key, and its key columns in order.
_INDEXES = text(
    "SELECT c.relname, i.indisprimary, ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
    " FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k)"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:table)"
)


def versions_table(schema: str) -> Table:
    """The version of each source's state layout (``scope`` is the source's name)."""
    return Table(
        "state_versions",
        MetaData(schema=schema),
        Column("scope", Text, primary_key=True),
        Column("version", Integer, nullable=False),
        Column("migrated_at", DateTime(timezone=True)),
    )


def _previous_release(conn: Connection, schema: str, scope: str) -> None:
    """Version 1, the layout of every release before versioning (``<scope>_cursors``, …). Where
    this step runs those tables exist; creating the missing ones completes the state of a release
    older still (one before shard plans, say), so that step 2 finds every table."""
    tables_of(schema, scope, sep="_")[0].create_all(conn, checkfirst=True)


def _collision_free_names(conn: Connection, schema: str, scope: str) -> None:
    """Version 2, ``<scope>__<kind>``: source ``pypi_log``'s ``_cursors`` was source ``pypi``'s
    ``_log_cursors`` (and ``pypi_feed``'s its ``_feed_cursors``), so one source's ``status`` failed
    on the other's columns. A table is renamed (rows and grants kept) only when it has the
    columns of its kind: an old name two sources shared belongs to the one whose columns it has,
    and the other gets a new, empty table (its state never worked). The primary key, serial
    sequence and index are renamed to what a new source gets, so a later step may name them."""
    preparer = conn.dialect.identifier_preparer
    new_tables = tables_of(schema, scope)
    for old, new in zip(tables_of(schema, scope, sep="_")[1:], new_tables[1:], strict=True):
        if not columns_of(conn, old) >= set(old.c.keys()) or columns_of(conn, new):
            continue
        conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(old)} RENAME TO {preparer.quote(new.name)}")
        by_keys = {tuple(c.name for c in index.columns): index.name for index in new.indexes}
        for name, primary, keys in conn.execute(_INDEXES, {"table": preparer.format_table(new)}):
            target = f"{new.name}_pkey" if primary else by_keys.get(tuple(keys))
            if target is not None and target != name:
                conn.exec_driver_sql(
                    f"ALTER INDEX {preparer.quote_schema(schema)}.{preparer.quote(name)}"
                    f" RENAME TO {preparer.quote(str(target))}"
                )
        if "id" in new.c:
            sequence = conn.execute(select(func.pg_get_serial_sequence(preparer.format_table(new), "id")))
            for name in sequence.scalars():
                conn.exec_driver_sql(
                    f"ALTER SEQUENCE {name} RENAME TO {preparer.quote(f'{new.name}_id_seq')}"
                )
    new_tables[0].create_all(conn, checkfirst=True)


STEPS: tuple[Step, ...] = (_previous_release, _collision_free_names)
"""Version ``n`` is the layout after ``STEPS[:n]``; a step is never changed once released, a
change is a new step at the end."""
LATEST = len(STEPS)


def _unversioned(conn: Connection, schema: str, scope: str) -> bool:
    """Whether tables of the old names that are this source's exist (a release before
    versioning): one with the columns of its kind, so another source's of the same name is not."""
    return any(columns_of(conn, t) >= set(t.c.keys()) for t in tables_of(schema, scope, sep="_")[1:])


def migrate(state: StateSchema) -> tuple[int, int]:
    """Bring the source's state to :data:`LATEST`; ``(from, to)`` (``from`` is 0 for a new source
    or one of a release before versioning). One transaction under the lock of the state schema, so
    concurrent first uses (the shards of a backfill) wait for one migration and then find it done;
    a failed step leaves the state as it was."""
    schema, scope = state.schema, state.scope
    versions = versions_table(schema)

    def run() -> tuple[int, bool]:
        with state.engine.begin() as conn:
            # concurrent first creations would race in the catalogue ("duplicate key …
            # pg_namespace") and concurrent migrations rename the same tables: one at a time
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"etl_state:{schema}"))))
            conn.execute(CreateSchema(schema, if_not_exists=True))
            versions.create(conn, checkfirst=True)
            found = conn.execute(select(versions.c.version).where(versions.c.scope == scope)).scalar()
            if found is not None and found > LATEST:
                raise ConfigError(
                    f"state of source {scope!r} is at version {found}, this release knows up to "
                    f"{LATEST}: upgrade pg-opensearch-sync (nothing in {schema} was changed)"
                )
            if found == LATEST:
                return LATEST, False
            ran = found is not None or _unversioned(conn, schema, scope)
            if ran:
                for step in STEPS[found or 0 :]:
                    step(conn, schema, scope)
            else:
                state.meta.create_all(conn, checkfirst=True)
            stmt = insert(versions).values(scope=scope, version=LATEST, migrated_at=func.now())
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[versions.c.scope],
                    set_={"version": stmt.excluded.version, "migrated_at": stmt.excluded.migrated_at},
                )
            )
            return found or 0, ran

    start, ran = state.call("migrating its tables", run)
    if ran:
        event("state_migrated", scope=scope, schema=schema, from_version=start, to_version=LATEST)
    return start, LATEST
