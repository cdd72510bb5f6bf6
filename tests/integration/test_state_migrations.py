"""The state tables migrate: the previous release's state keeps its cursors and letters under the
new names, sources named alike keep apart, and a newer release's state is left alone."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from etl_core.errors import ConfigError
from etl_core.model.cursor import Cursor, LogCursor, Position
from etl_core.model.records import DeadLetter
from etl_core.model.snapshot import Snapshot
from etl_core.operations.lifecycle import MigrationRecords
from etl_core.settings import Settings, make_engine
from etl_core.state.migrations import LATEST, migrate, versions_table
from etl_core.state.stores import PostgresCursorStore, PostgresDeadLetterStore, StateSchema
from etl_core.state.tables import tables_of

pytestmark = pytest.mark.integration

AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
FEED = LogCursor.done(Snapshot.below(1234))


@pytest.fixture
def schema(settings: Settings) -> Iterator[tuple[Engine, str]]:
    """An engine on the state database and a schema of this test's own, dropped at the end."""
    engine = make_engine(settings.state_url)
    name = f"state_mig_{uuid.uuid4().hex[:10]}"
    try:
        yield engine, name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()


def previous_release(conn: Connection, schema: str, scope: str) -> None:
    """The DDL the release before versioning ran for a source (``create_all(checkfirst=True)``
    of its tables, hence ``IF NOT EXISTS``): old names, no version table."""
    s = f'"{schema}"'
    conn.exec_driver_sql(f"""
        CREATE SCHEMA IF NOT EXISTS {s};
        CREATE TABLE IF NOT EXISTS {s}.{scope}_cursors (
            version TEXT NOT NULL,
            changed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            key JSONB NOT NULL,
            saved_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (version));
        CREATE TABLE IF NOT EXISTS {s}.{scope}_dead_letters (
            id SERIAL NOT NULL,
            version TEXT NOT NULL,
            key TEXT NOT NULL,
            changed_at TIMESTAMP WITH TIME ZONE,
            reason TEXT NOT NULL,
            payload JSONB,
            attempts INTEGER DEFAULT '1' NOT NULL,
            first_failed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            last_failed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            resolved_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (id));
        CREATE UNIQUE INDEX IF NOT EXISTS {scope}_dead_letters_open
            ON {s}.{scope}_dead_letters (version, key) WHERE resolved_at IS NULL;
        CREATE TABLE IF NOT EXISTS {s}.{scope}_feed_cursors (
            version TEXT NOT NULL,
            head BIGINT[] NOT NULL,
            key JSONB NOT NULL,
            tail BIGINT[] NOT NULL,
            position JSONB NOT NULL,
            saved_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (version));
        CREATE TABLE IF NOT EXISTS {s}.{scope}_retirements (
            version TEXT NOT NULL,
            index_name TEXT NOT NULL,
            retired_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            delete_after TIMESTAMP WITH TIME ZONE NOT NULL,
            deleted_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (version));
        CREATE TABLE IF NOT EXISTS {s}.{scope}_shard_plans (
            lane TEXT NOT NULL,
            plan JSONB NOT NULL,
            planned_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (lane));
        CREATE TABLE IF NOT EXISTS {s}.{scope}_validations (
            id SERIAL NOT NULL,
            version TEXT NOT NULL,
            passed BOOLEAN NOT NULL,
            report JSONB NOT NULL,
            validated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (id));
        CREATE INDEX IF NOT EXISTS "ix_{schema}_{scope}_validations_version"
            ON {s}.{scope}_validations (version);
    """)


def save_feed(conn: Connection, schema: str, scope: str, version: str, cursor: LogCursor) -> None:
    """A change-log position as the previous release's store saved it."""
    feed = tables_of(schema, scope, sep="_")[3]
    head, key, tail = cursor.rank_columns()
    conn.execute(
        feed.insert().values(version=version, head=head, key=key, tail=tail, position=cursor.to_json())
    )


def layout(conn: Connection, schema: str, scope: str) -> set[tuple[str, ...]]:
    """Every relation, column, constraint and index of the source's tables, its name replaced."""
    rows = conn.execute(
        text("""
        SELECT 'relation', c.relname, c.relkind::text, '' FROM pg_class c
            WHERE c.relnamespace = to_regnamespace(:schema)
        UNION ALL SELECT 'column', table_name, column_name,
            concat_ws(' ', data_type, is_nullable, column_default)
            FROM information_schema.columns WHERE table_schema = :schema
        UNION ALL SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = to_regnamespace(:schema)
        UNION ALL SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :schema
        """),
        {"schema": schema},
    ).all()
    prefix = f"{scope}__"
    return {tuple(str(v).replace(prefix, "<source>__") for v in row) for row in rows if prefix in row[1]}


def relations(conn: Connection, schema: str) -> set[str]:
    stmt = text("SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(:schema)")
    return set(conn.execute(stmt, {"schema": schema}).scalars())


def test_the_previous_release_state_is_upgraded_and_keeps_every_row(
    schema: tuple[Engine, str], caplog: pytest.LogCaptureFixture
) -> None:
    engine, name = schema
    old = tables_of(name, "shop", sep="_")
    with engine.begin() as conn:
        previous_release(conn, name, "shop")
        conn.execute(old[2].insert().values(version="v1", changed_at=AT, key=42))
        save_feed(conn, name, "shop", "v2", FEED)
        conn.execute(
            old[1].insert(),
            [
                {"version": "v1", "key": "7", "reason": "too big", "payload": {"id": 7}, "resolved_at": None},
                {"version": "v1", "key": "8", "reason": "gone", "payload": None, "resolved_at": AT},
            ],
        )
        conn.execute(old[4].insert().values(version="v1", passed=True, report={"checks": ["count"]}))
        conn.execute(old[5].insert().values(version="v0", index_name="shop_v0", delete_after=AT))

    state = StateSchema(engine, "shop", name)
    with caplog.at_level(logging.INFO, logger="etl_core"):
        state.create()
    assert f"state_migrated scope=shop schema={name} from_version=0 to_version={LATEST}" in caplog.text

    cursors, letters = PostgresCursorStore(state), PostgresDeadLetterStore(state)
    assert cursors.load(["v1", "v2", "v3"]) == {"v1": Cursor(AT, 42), "v2": FEED, "v3": None}
    assert letters.count_open("v1") == 1
    assert [(d["key"], d["reason"], d["payload"]) for d in letters.open_letters()] == [
        ("7", "too big", {"id": 7})
    ]
    records = MigrationRecords(state)
    assert records.latest_validation("v1") is not None
    assert records.latest_validation("v1")[:2] == (True, {"checks": ["count"]})  # type: ignore[index]
    assert records.retired() == {"v0"}

    # the renamed unique index and sequence work: a repeat is one letter, a new one a new id
    letters.put(
        [DeadLetter("v1", "7", "still too big", None, None), DeadLetter("v1", "9", "bad", None, None)]
    )
    cursors.save({"v1": Cursor(AT + timedelta(seconds=1), 1)})
    with engine.connect() as conn:
        rows = conn.execute(
            text(f'SELECT id, key, attempts FROM "{name}".shop__dead_letters ORDER BY id')
        ).all()
        assert [(key, attempts) for _, key, attempts in rows] == [("7", 2), ("8", 1), ("9", 1)]
        assert [r.id for r in rows[:2]] == [1, 2] and rows[2].id > 2  # (the upsert used one too)
        assert conn.execute(text(f'SELECT count(*) FROM "{name}".shop__validations')).scalar_one() == 1
        versions = versions_table(name)
        assert conn.execute(
            versions.select().with_only_columns(versions.c.scope, versions.c.version)
        ).all() == [("shop", LATEST)]
        # no table, index or sequence of the old names is left
        assert {
            r for r in relations(conn, name) if r.startswith("shop_") and not r.startswith("shop__")
        } == set()
    assert cursors.load(["v1"])["v1"] == Cursor(AT + timedelta(seconds=1), 1)

    # a second run runs no step
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="etl_core"):
        assert migrate(state) == (LATEST, LATEST)
    assert "state_migrated" not in caplog.text

    # the migrated layout is exactly a new source's, names included (so later steps may name them)
    StateSchema(engine, "fresh", name).create()
    with engine.connect() as conn:
        assert layout(conn, name, "shop") == layout(conn, name, "fresh")
        assert len(layout(conn, name, "shop")) > 40


def test_sources_named_alike_keep_their_own_state(schema: tuple[Engine, str]) -> None:
    """``pypi_log`` + ``_cursors`` was ``pypi``'s ``_log_cursors``: now each reads its own."""
    engine, name = schema
    states = {s: StateSchema(engine, s, name) for s in ("pypi", "pypi_log", "pypi_feed")}
    for state in states.values():
        state.create()
    saved: dict[str, Position] = {"pypi": FEED, "pypi_log": Cursor(AT, 1), "pypi_feed": Cursor(AT, 2)}
    for scope, cursor in saved.items():
        PostgresCursorStore(states[scope]).save({"v1": cursor})
    for scope, cursor in saved.items():
        assert PostgresCursorStore(states[scope]).load(["v1", "v2"]) == {"v1": cursor, "v2": None}


def test_the_previous_release_state_of_sources_named_alike_is_told_apart(schema: tuple[Engine, str]) -> None:
    """In the previous release ``pypi_feed``'s ``_cursors`` was ``pypi``'s ``_feed_cursors`` (the
    first to run created it, the other's state never worked), and ``pypi`` read ``pypi_log``'s
    ``_cursors`` as its old reader's ``_log_cursors``. Whichever source upgrades first, each keeps
    what is its own: a table is the source's whose columns it has."""
    engine, name = schema
    with engine.begin() as conn:
        for scope in ("pypi", "pypi_log", "pypi_feed"):
            previous_release(conn, name, scope)
        save_feed(conn, name, "pypi", "v1", FEED)
        conn.execute(
            tables_of(name, "pypi_log", sep="_")[2].insert().values(version="v1", changed_at=AT, key=1)
        )

    pypi_feed = StateSchema(engine, "pypi_feed", name)
    pypi_feed.create()  # pypi_feed_cursors is pypi's (it has head, tail): left alone
    assert PostgresCursorStore(pypi_feed).load(["v1"]) == {"v1": None}
    pypi = StateSchema(engine, "pypi", name)
    pypi.create()  # pypi_log_cursors is pypi_log's, not migrated yet: not read as pypi's old reader's
    assert PostgresCursorStore(pypi).load(["v1", "v2"]) == {"v1": FEED, "v2": None}
    pypi_log = StateSchema(engine, "pypi_log", name)
    pypi_log.create()
    assert PostgresCursorStore(pypi_log).load(["v1"]) == {"v1": Cursor(AT, 1)}
    with engine.connect() as conn:
        assert not {"pypi_feed_cursors", "pypi_log_cursors", "pypi_cursors"} & relations(conn, name)


def test_a_newer_release_state_is_refused_untouched(schema: tuple[Engine, str]) -> None:
    engine, name = schema
    StateSchema(engine, "shop", name).create()
    with engine.begin() as conn:
        conn.execute(versions_table(name).insert().values(scope="future", version=LATEST + 1))
        before = relations(conn, name)
    with pytest.raises(
        ConfigError,
        match=rf"state of source 'future' is at version {LATEST + 1}, this release knows up to "
        rf"{LATEST}: upgrade pg-opensearch-sync",
    ):
        StateSchema(engine, "future", name).create()
    with engine.connect() as conn:
        assert relations(conn, name) == before


@pytest.mark.parametrize(
    ("scope", "fix"),
    [("pypi__log", "'pypi_log'"), ("pypi_", "'pypi'"), ("a" * 43, "shorter name")],
)
def test_a_source_name_that_could_be_another_s_state_is_refused(scope: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=rf"source name \(Source.name\) '{scope}'.*{fix}"):
        StateSchema(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"), scope)  # never opened
