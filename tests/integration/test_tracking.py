"""Generated change capture on the real PostgreSQL: DDL, entries, cost, privileges, NOTIFY."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Column, Connection, Engine, MetaData, Table, Text, select, text
from sqlalchemy.exc import ProgrammingError

from catalogue.generate import generate
from catalogue.source import TRACKING, brands, categories, product_categories, products
from etl_core.capture.triggers import Hop, Tracked, Tracking, TrackingInUse
from etl_core.errors import ConfigError
from tests.conftest import ROOT
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

USER_TABLES = ("products", "brands", "categories", "product_categories")
Entry = tuple[int, str, tuple[str, ...], str]

SNAPSHOT = text(
    """
    SELECT 'trigger', c.relname || '.' || t.tgname, t.oid::bigint, t.tgfoid::regprocedure::text,
           pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, p.oid::bigint,
           p.prosecdef::text || ' ' || coalesce(array_to_string(p.proconfig, ','), ''),
           pg_get_functiondef(p.oid)
    FROM pg_proc p WHERE p.pronamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'relation', n.nspname || '.' || c.relname, c.oid::bigint, c.relkind::text, ''
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('public', :schema)
    ORDER BY 1, 2
    """
)


def prepare(h: Harness, rows: int, seed: int = 5) -> None:
    """Demo data, then the demo's own tracking removed: each test installs what it examines."""
    generate(h.source_engine, rows=rows, seed=seed)
    TRACKING.remove(h.source_engine, force=True)  # the demo's entries go with it


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(SNAPSHOT, {"schema": TRACKING.schema})]


def user_rows(engine: Engine) -> dict[str, list[tuple[str, str]]]:
    """Every user row with its xmin: a rewrite with identical values would still show."""
    with engine.connect() as conn:
        return {
            t: [
                tuple(r)
                for r in conn.exec_driver_sql(f"SELECT xmin::text, to_jsonb(t)::text FROM {t} t ORDER BY 2")
            ]
            for t in USER_TABLES
        }


def current_xid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())


class Log:
    """Reads the entries appended since the last read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seq = 0

    def new(self) -> list[Entry]:
        log = TRACKING.log_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(log.c.seq, log.c.xid, log.c.tbl, log.c["keys"], log.c.op)
                .where(log.c.seq > self.seq)
                .order_by(log.c.seq)
            ).all()
        if rows:
            self.seq = rows[-1].seq
        return [(r.xid, r.tbl, tuple(sorted(set(r[3]))), r.op) for r in rows]  # the distinct keys


def write(engine: Engine, statement: str, **params: Any) -> int:
    """Runs one statement in its own transaction; returns that transaction's id."""
    with engine.begin() as conn:
        conn.execute(text(statement), params)
        return current_xid(conn)


def ours(snap: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row for row in snap if "etl_track_" in row[1] or "catalogue_changes" in row[1]]


# -- declaration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Tracking("catalogue", products, "nope"), "key='nope' is not a column of products"),
        (
            lambda: Tracking("catalogue", products, "id", (Tracked(brands, "nope"),)),
            "joined[0] (brands): Tracked.column='nope' is not a column of brands",
        ),
        (
            lambda: Tracking(
                "catalogue", products, "id", (Tracked(brands, "id", (Hop(products, "x", "id"),)),)
            ),
            "joined[0] (brands) path[0]: Hop.match='x' is not a column of products",
        ),
        (
            lambda: Tracking(
                "catalogue", products, "id", (Tracked(brands, "id", (Hop(products, "brand_id", "y"),)),)
            ),
            "joined[0] (brands) path[0]: Hop.to='y' is not a column of products",
        ),
        (
            lambda: Tracking("catalogue", products, "id", (Tracked(products, "id"),)),
            "remove it from joined",
        ),
        (
            lambda: Tracking("catalogue", products, "id", (Tracked(brands, "id"), Tracked(brands, "name"))),
            "already tracked as joined[0]",
        ),
        (
            lambda: Tracking(
                "catalogue",
                products,
                "id",
                (Tracked(categories, "id", (Hop(product_categories, "category_id", "product_id"),)),),
            ),
            "add Tracked(product_categories, ...) to joined",
        ),
        (
            lambda: Tracking(
                "catalogue",
                products,
                "id",
                (Tracked(brands, "id", (Hop(products, "brand_id", "brand_id"),)),),
            ),
            "it must end at the root key: to='id'",
        ),
        (lambda: Tracking("Catalogue", products, "id"), "lower-case identifier"),
        (lambda: Tracking("x" * 42, products, "id"), "lower-case identifier"),
    ],
)
def test_a_wrong_declaration_names_the_field_and_the_fix(build: Callable[[], Tracking], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build()
    assert message in str(raised.value)


def test_names_follow_the_source() -> None:
    assert TRACKING.channel == "etl_catalogue"
    assert TRACKING.log_table.fullname == "etl_state.catalogue_changes"
    assert [c.name for c in TRACKING.log_table.primary_key.columns] == ["xid", "seq"]
    assert TRACKING.trigger_names() == (
        "etl_track_catalogue_ins",
        "etl_track_catalogue_upd",
        "etl_track_catalogue_del",
        "etl_track_catalogue_key",
        "etl_track_catalogue_trunc",
    )


# -- DDL --------------------------------------------------------------------------------------


def test_plan_applies_idempotently_and_remove_restores_the_catalogue(harness: Harness) -> None:
    h = harness
    engine = h.source_engine
    prepare(h, rows=300)

    plan = TRACKING.plan()
    assert "CREATE SCHEMA IF NOT EXISTS etl_state;" in plan
    assert "CREATE TABLE IF NOT EXISTS etl_state.catalogue_changes (" in plan
    for table in USER_TABLES:
        assert f"CREATE OR REPLACE FUNCTION etl_state.etl_track_catalogue_{table}() RETURNS trigger" in plan
        ins, upd, dlt, key, trunc = TRACKING.trigger_names()
        for name, event in zip((ins, upd, dlt), ("INSERT", "UPDATE", "DELETE"), strict=True):
            assert re.search(
                rf"CREATE OR REPLACE TRIGGER {name}\s+AFTER {event} ON {table} REFERENCING", plan
            )
        assert re.search(
            rf"CREATE OR REPLACE TRIGGER {key}\s+AFTER UPDATE OF \w+ ON {table}\s+FOR EACH ROW", plan
        )
        assert re.search(rf"CREATE OR REPLACE TRIGGER {trunc}\s+AFTER TRUNCATE ON {table}", plan)
        for name in TRACKING.trigger_names():
            assert f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}" in plan
    assert plan.count("SECURITY DEFINER SET search_path = pg_catalog, pg_temp") == 4
    assert plan.count("FOR EACH STATEMENT") == 16 and plan.count("FOR EACH ROW") == 4
    assert "old_rows NEW TABLE" not in plan  # an UPDATE captures its new rows only
    assert not re.search(r"\bUPDATE\s+(ONLY\s+)?[\w\".]+\s+SET\b", plan, re.IGNORECASE)
    assert "-- brands: logs brands.id" in plan
    assert "Root keys (products.id): rows of products where brand_id = value, their id." in plan
    assert [s.strip() for s in plan.split(";\n") if s.strip()][-1].endswith(
        "ENABLE ALWAYS TRIGGER etl_track_catalogue_trunc"
    )

    before, rows = snapshot(engine), user_rows(engine)
    assert not ours(before)
    assert not TRACKING.installed(engine)

    TRACKING.apply(engine)
    assert TRACKING.installed(engine)
    first = snapshot(engine)
    triggers = [r for r in ours(first) if r[0] == "trigger"]
    assert sorted(r[1] for r in triggers) == sorted(
        f"{t}.{n}" for t in USER_TABLES for n in TRACKING.trigger_names()
    )
    assert all(("FOR EACH STATEMENT" in r[4]) != ("WHEN" in r[4]) for r in triggers), triggers
    functions = [r for r in ours(first) if r[0] == "function"]
    assert len(functions) == 4 and all(r[3] == "true search_path=pg_catalog, pg_temp" for r in functions)

    TRACKING.apply(engine)  # nothing changes, not even an oid
    assert snapshot(engine) == first
    assert user_rows(engine) == rows

    TRACKING.remove(engine)
    assert snapshot(engine) == before
    assert user_rows(engine) == rows
    assert not TRACKING.installed(engine)
    TRACKING.remove(engine)  # idempotent too
    assert snapshot(engine) == before


def test_the_reviewed_ddl_of_the_demo_is_what_the_declaration_generates() -> None:
    """deploy/catalogue-tracking.sql is what a DBA reads in review; it must be today's plan."""
    checked_in = (ROOT / "deploy" / "catalogue-tracking.sql").read_text().splitlines(keepends=True)
    assert checked_in[0].startswith("-- Generated by: python -m etl_core")
    assert "".join(checked_in[2:]) == TRACKING.plan(), (
        "regenerate deploy/catalogue-tracking.sql (see its first line)"
    )


def test_a_dba_applies_the_printed_plan_with_psql_and_the_commands_agree(harness: Harness) -> None:
    """The path a DBA takes: ``tracking plan`` from the shell, reviewed, run with ``psql``; then
    ``status``, ``apply`` (changes nothing) and ``remove`` as commands."""
    h = harness
    engine = h.source_engine
    prepare(h, rows=100)
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "SOURCE_DATABASE_URL": url}
    env.pop("TRACKING_DATABASE_URL", None)

    def command(*verb: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etl_core", "--source", "catalogue.source:CATALOGUE", "tracking", *verb],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )

    before, rows = snapshot(engine), user_rows(engine)
    planned = command("plan")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout == TRACKING.plan()
    assert command("status").returncode == 1  # not installed yet: exit 1, as a check wants

    libpq_url = url.replace("postgresql+psycopg://", "postgresql://")
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    applied = subprocess.run(
        [psql, libpq_url, "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"],
        input=planned.stdout,
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 0, applied.stderr
    status = command("status")
    assert status.returncode == 0
    assert orjson.loads(status.stdout) == {
        "source": "catalogue",
        "action": "status",
        "installed": True,
        "disabled_triggers": [],
    }
    first = snapshot(engine)
    assert ours(first) and user_rows(engine) == rows

    assert command("apply").returncode == 0
    assert snapshot(engine) == first  # the command finds the DBA's work done: nothing changes

    assert command("remove").returncode == 0
    assert snapshot(engine) == before
    assert user_rows(engine) == rows
    assert command("status").returncode == 1


def test_a_shrunk_declaration_leaves_no_trigger_behind(harness: Harness) -> None:
    """Triggers of tables dropped from the declaration would log what no reader maps (after
    apply) or write into a dropped log (after remove): both must take them away."""
    h = harness
    engine = h.source_engine
    prepare(h, rows=50)
    before = snapshot(engine)
    TRACKING.apply(engine)
    shrunk = Tracking("catalogue", products, "id", (Tracked(product_categories, "product_id"),))
    shrunk.apply(engine)
    assert shrunk.installed(engine)
    left = {r[1].split(".")[0] for r in ours(snapshot(engine)) if r[0] == "trigger"}
    assert left == {"products", "product_categories"}
    functions = {r[1] for r in ours(snapshot(engine)) if r[0] == "function"}
    assert functions == {
        "etl_state.etl_track_catalogue_products()",
        "etl_state.etl_track_catalogue_product_categories()",
    }
    TRACKING.apply(engine)
    shrunk.remove(engine)  # the declaration no longer names brands and categories
    assert snapshot(engine) == before
    write(engine, "UPDATE brands SET name = name || '!' WHERE id = 1")  # no trigger left to fail


def test_identifiers_that_need_quoting_work(harness: Harness) -> None:
    engine = harness.source_engine
    odd = Table("Odd Table", MetaData(), Column("Key", Text), Column("it's", Text))
    with engine.begin() as conn:
        odd.metadata.create_all(conn)
    tracking = Tracking("odd", odd, "Key", schema="Etl State")
    assert 'AFTER INSERT ON "Odd Table"' in tracking.plan()
    tracking.apply(engine)
    tracking.apply(engine)
    assert tracking.installed(engine)
    xid = write(engine, """INSERT INTO "Odd Table" VALUES ('a''b', 'x'), (NULL, 'y')""")
    log = tracking.log_table
    with engine.connect() as conn:
        rows = conn.execute(select(log.c.xid, log.c.tbl, log.c["keys"], log.c.op)).all()
    assert [tuple(r) for r in rows] == [(xid, "Odd Table", ["a'b"], "I")]  # NULL is not logged
    with pytest.raises(TrackingInUse, match=r"still holds 1 entries \(1 keys\).*--force"):
        tracking.remove(engine)  # the entry may not have reached every version
    assert tracking.installed(engine)
    tracking.remove(engine, force=True)
    assert not tracking.installed(engine)
    with engine.connect() as conn:
        assert (
            conn.exec_driver_sql(
                """SELECT count(*) FROM pg_proc WHERE pronamespace = to_regnamespace('"Etl State"')"""
            ).scalar_one()
            == 0
        )
        assert conn.exec_driver_sql('SELECT count(*) FROM "Odd Table"').scalar_one() == 2


# -- entries ----------------------------------------------------------------------------------


def test_each_statement_logs_one_entry_with_its_keys(harness: Harness) -> None:
    h = harness
    engine = h.source_engine
    prepare(h, rows=100)
    TRACKING.apply(engine)
    log = Log(engine)

    with engine.begin() as conn:
        pid = conn.execute(
            text("INSERT INTO products (sku, brand_id) VALUES ('SKU-T-1', 1) RETURNING id")
        ).scalar_one()
        xid = current_xid(conn)
    p = str(pid)
    assert log.new() == [(xid, "products", (p,), "I")]

    xid = write(engine, "UPDATE products SET stock = stock + 1 WHERE id IN (1, 2, 3)")
    assert log.new() == [(xid, "products", ("1", "2", "3"), "U")]  # one entry for the statement

    xid = write(engine, "UPDATE brands SET name = name || ' renamed' WHERE id = 2")
    assert log.new() == [(xid, "brands", ("2",), "U")]
    xid = write(engine, "UPDATE categories SET name = name || ' renamed' WHERE id = 3")
    assert log.new() == [(xid, "categories", ("3",), "U")]

    xid = write(engine, "INSERT INTO product_categories VALUES (:p, 1), (:p, 2)", p=pid)
    assert log.new() == [(xid, "product_categories", (p,), "I")]
    xid = write(engine, "DELETE FROM product_categories WHERE product_id = :p", p=pid)
    assert log.new() == [(xid, "product_categories", (p,), "D")]

    # an update of the logged column logs the new values, and each changed row's old value
    with engine.connect() as conn:
        moved = conn.exec_driver_sql(
            "SELECT count(*) FROM product_categories WHERE product_id = 4"
        ).scalar_one()
    xid = write(engine, "UPDATE product_categories SET product_id = :p WHERE product_id = 4", p=pid)
    assert sorted(log.new()) == sorted(
        [(xid, "product_categories", (p,), "U")] + [(xid, "product_categories", ("4",), "U")] * moved
    )
    xid = write(
        engine, "UPDATE product_categories SET category_id = category_id WHERE product_id = :p", p=pid
    )
    assert log.new() == [(xid, "product_categories", (p,), "U")]  # the column kept: no old value

    xid = write(engine, "DELETE FROM products WHERE id = :p", p=pid)  # its links go by ON DELETE CASCADE
    assert sorted(log.new()) == [(xid, "product_categories", (p,), "D"), (xid, "products", (p,), "D")]

    # two statements in one transaction: one entry each, the same xid
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE products SET stock = 1 WHERE id = 7")
        conn.exec_driver_sql("UPDATE products SET stock = 2 WHERE id = 7")
        xid = current_xid(conn)
    assert log.new() == [(xid, "products", ("7",), "U"), (xid, "products", ("7",), "U")]

    write(engine, "UPDATE products SET stock = 0 WHERE id = -1")
    write(engine, "DELETE FROM brands WHERE id = -1")
    with engine.begin() as conn:  # rolled back: its entries go with it
        conn.exec_driver_sql("UPDATE products SET stock = 3 WHERE id = 8")
        conn.rollback()
    assert log.new() == []


def test_truncate_and_replica_mode_leave_no_silent_gap(harness: Harness) -> None:
    """A TRUNCATE is one entry without keys (op T); a session in replica mode, as a logical
    replication apply worker or pg_restore runs, still logs; a disabled trigger is reported."""
    h = harness
    engine = h.source_engine
    prepare(h, rows=50)
    TRACKING.apply(engine)
    log = Log(engine)
    assert TRACKING.disabled(engine) == []
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("UPDATE products SET stock = 5 WHERE id = 9")
        xid = current_xid(conn)
    assert log.new() == [(xid, "products", ("9",), "U")]
    xid = write(engine, "TRUNCATE product_categories")
    assert log.new() == [(xid, "product_categories", (), "T")]
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products DISABLE TRIGGER etl_track_catalogue_upd")
    assert TRACKING.disabled(engine) == ["products.etl_track_catalogue_upd: disabled"]
    TRACKING.apply(engine)  # applying again turns it back on
    assert TRACKING.disabled(engine) == []


def test_a_parent_rename_writes_no_child_row_and_one_entry(harness: Harness) -> None:
    h = harness
    engine = h.source_engine
    prepare(h, rows=50_000, seed=9)
    with engine.begin() as conn:  # every product a child of brand 1, before anything is measured
        conn.exec_driver_sql("UPDATE products SET brand_id = 1")
    TRACKING.apply(engine)
    log = Log(engine)
    assert log.new() == []

    def updated_products(conn: Connection) -> int:
        # PG15 keeps a backend's counts pending until it is idle; force this backend's flush, then
        # read past the cached stats snapshot of this session.
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        conn.commit()  # idle after COMMIT: the flush happens before the next statement is read
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        n = conn.exec_driver_sql(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'products'::regclass"
        ).scalar_one()
        conn.commit()
        return int(n)

    with engine.connect() as conn:
        children = conn.exec_driver_sql("SELECT count(*) FROM products WHERE brand_id = 1").scalar_one()
        assert children == 50_000
        conn.commit()
        before = updated_products(conn)
        assert before >= 50_000  # the re-parenting above is counted: the counter is fresh
        conn.exec_driver_sql("UPDATE brands SET name = 'Renamed' WHERE id = 1")
        xid = current_xid(conn)
        conn.commit()
        assert updated_products(conn) == before
        assert log.new() == [(xid, "brands", ("1",), "U")]
        conn.exec_driver_sql("UPDATE products SET stock = stock WHERE id <= 10")  # the probe sees updates
        conn.commit()
        assert updated_products(conn) == before + 10
    assert [len(keys) for _, _, keys, _ in log.new()] == [10]  # one entry, ten keys


# -- privileges -------------------------------------------------------------------------------


def test_a_writer_without_any_privilege_on_the_state_schema_can_write(harness: Harness) -> None:
    h = harness
    engine = h.source_engine
    prepare(h, rows=20)
    TRACKING.apply(engine)
    log = Log(engine)
    role = f"etl_writer_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" NOLOGIN')
        conn.exec_driver_sql(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON products, product_categories TO "{role}"'
        )
        conn.exec_driver_sql(f'GRANT USAGE ON SEQUENCE products_id_seq TO "{role}"')
    try:
        with engine.connect() as conn:
            usage, insert = conn.execute(
                text("SELECT has_schema_privilege(:r, :s, 'USAGE'), has_table_privilege(:r, :t, 'INSERT')"),
                {"r": role, "s": TRACKING.schema, "t": TRACKING.log_table.fullname},
            ).one()
            assert (usage, insert) == (False, False)
            conn.exec_driver_sql(f'SET ROLE "{role}"')
            with pytest.raises(ProgrammingError, match="permission denied for schema etl_state"):
                conn.exec_driver_sql("SELECT count(*) FROM etl_state.catalogue_changes")
            conn.rollback()

            conn.exec_driver_sql(f'SET ROLE "{role}"')
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == role
            pid = conn.exec_driver_sql(
                "INSERT INTO products (sku) VALUES ('SKU-ROLE-1') RETURNING id"
            ).scalar_one()
            conn.exec_driver_sql(f"UPDATE products SET stock = 5 WHERE id = {int(pid)}")
            conn.exec_driver_sql("DELETE FROM product_categories WHERE product_id = 3")
            conn.exec_driver_sql(f"DELETE FROM products WHERE id = {int(pid)}")
            xid = current_xid(conn)
            conn.exec_driver_sql("RESET ROLE")
            conn.commit()
        assert log.new() == [
            (xid, "products", (str(pid),), "I"),
            (xid, "products", (str(pid),), "U"),
            (xid, "product_categories", ("3",), "D"),
            (xid, "products", (str(pid),), "D"),
        ]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


# -- NOTIFY -----------------------------------------------------------------------------------


def test_a_committed_change_notifies_the_channel_once(harness: Harness) -> None:
    h = harness
    engine = h.source_engine
    prepare(h, rows=20)
    TRACKING.apply(engine)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(TRACKING.channel)))

        with engine.begin() as conn:  # three rows, two statements: one notification at commit
            conn.exec_driver_sql(
                "INSERT INTO products (sku) SELECT 'SKU-N-' || g FROM generate_series(1, 3) g"
            )
            conn.exec_driver_sql("UPDATE brands SET name = name || '!' WHERE id = 1")
            assert list(listener.notifies(timeout=0.5)) == []  # nothing before the commit
        got = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in got] == [(TRACKING.channel, "")]
        assert list(listener.notifies(timeout=0.5)) == []

        write(engine, "UPDATE products SET stock = 1 WHERE id = -1")
        write(engine, "DELETE FROM product_categories WHERE product_id = -1")
        assert list(listener.notifies(timeout=1)) == []

        write(engine, "DELETE FROM products WHERE sku = 'SKU-N-1'")  # the listener still hears
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1
