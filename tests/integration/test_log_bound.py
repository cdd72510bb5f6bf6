"""What holds back the change log's read bound, proved on the real server.

Why: the high watermark used to be ``min(xact_start)`` from ``pg_stat_activity``. That needs
``pg_read_all_stats`` (without it other roles' ``xact_start`` reads as NULL, so the watermark
silently stops protecting anything), and autovacuum workers held it back by 17-19 s. Its
replacement is a change log whose entries carry ``pg_current_xact_id()`` of the transaction that
wrote them, read only below ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction with
a lower xid has ended, so no entry can still appear below the bound, whatever the commit order.

Each case opens a disturbing session, then commits a writing transaction T (xid X) *after* the
disturbance started, and asserts whether the bound passes X while the disturbance is still going
on. The bound is always read by a LOGIN role that has CONNECT on the test database and nothing
else. Where the disturbance must stay in progress, it is frozen deterministically (a throttled
VACUUM, an index expression waiting on an advisory lock, a pg_dump whose stdout is not read)
rather than made "big enough", and its state is observed rather than slept on.

Observed on PostgreSQL 15:

- lazy VACUUM, manual or autovacuum: does not hold the bound (no xid; its xmin is not counted)
- VACUUM FULL: takes an xid and holds the bound until it ends, like any other DDL
- pg_dump / REPEATABLE READ READ ONLY snapshot / idle reading transaction: does not hold it
- idle transaction that wrote, a writer in another database, a prepared transaction: holds it
  at or below its xid until it ends (xids are cluster-wide; prepared ones outlive sessions)
- also takes an xid, so holds it while open: SELECT ... FOR UPDATE, LOCK ... ACCESS EXCLUSIVE
  (wal_level >= replica logs the lock under an xid), ANALYZE, the first nextval() of a sequence,
  and pg_current_xact_id() itself, even in a READ ONLY transaction
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import TupleRow, dict_row
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from etl_core.settings import Settings, make_engine

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")

BOUND_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
STAMP_SQL = "INSERT INTO log (xid) VALUES (pg_current_xact_id()::text::bigint) RETURNING xid, seq"
IF_ASSIGNED_SQL = "SELECT pg_current_xact_id_if_assigned()::text::bigint"
PAGE_SQL = "SELECT xid, seq FROM log WHERE (xid, seq) > (%s, %s) AND xid < %s ORDER BY xid, seq"
START: tuple[int, int] = (-1, -1)  # a keyset cursor before every entry
WAIT = 30.0  # seconds to wait for an observable event (other sessions on the server may lag it)


def connect(url: URL, *, autocommit: bool = False, name: str = "log_bound") -> Conn:
    return psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=autocommit,
        application_name=name,
    )


@dataclass(frozen=True)
class Db:
    """One fresh database: ``url`` is the owner's (superuser), ``reader`` the unprivileged role's
    AUTOCOMMIT engine (it only ever asks for the bound), ``observer`` an autocommit superuser
    session that sets up, watches ``pg_stat_activity`` and reads the log; it never keeps an xid."""

    url: URL
    reader: Engine
    observer: Conn

    def connect(self, *, autocommit: bool = False, name: str = "log_bound") -> Conn:
        return connect(self.url, autocommit=autocommit, name=name)


@pytest.fixture
def db(settings: Settings, admin_engine: Engine, database: str) -> Iterator[Db]:
    url = settings.source_url.set(database=database)
    role, password = f"log_bound_{uuid.uuid4().hex[:10]}", secrets.token_hex(16)
    with connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("CREATE TABLE log (xid bigint NOT NULL, seq bigserial, PRIMARY KEY (xid, seq))")
    with admin_engine.connect() as conn:
        conn.execute(
            text(
                f"CREATE ROLE {role} LOGIN PASSWORD '{password}' "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            )
        )
        conn.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC'))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
    reader = make_engine(url.set(username=role, password=password), isolation_level="AUTOCOMMIT")
    observer = connect(url, autocommit=True, name="observer")
    try:
        yield Db(url, reader, observer)
    finally:
        observer.close()
        reader.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'REVOKE CONNECT ON DATABASE "{database}" FROM {role}'))
            conn.execute(text(f"DROP ROLE {role}"))


def bound(engine: Engine) -> int:
    """Every xid below this has ended. Autocommit: a transaction's own snapshot would be stale."""
    with engine.connect() as conn:
        return int(conn.execute(text(BOUND_SQL)).scalar_one())


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll for a state the server exposes but does not announce."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def bound_passes(engine: Engine, xid: int) -> int:
    """The bound moves past ``xid``. Waits, because unrelated sessions elsewhere on the server
    (other test databases) may hold it back for a moment; the disturbance under test cannot."""
    return wait_for(lambda: b if (b := bound(engine)) > xid else None, f"the bound to pass {xid}")


def stamp(conn: Conn) -> tuple[int, int]:
    """Write one log entry (and a row of ``t``) in ``conn``'s open transaction: (xid, seq)."""
    row = conn.execute(STAMP_SQL).fetchone()
    assert row is not None
    conn.execute("INSERT INTO t VALUES (1)")
    return int(row[0]), int(row[1])


def committed_write(db: Db) -> tuple[int, int]:
    """Transaction T: stamps an entry and commits (psycopg commits when the block exits)."""
    with db.connect(name="T") as conn:
        return stamp(conn)


def page(db: Db, after: tuple[int, int], below: int) -> list[tuple[int, int]]:
    """The keyset reader: entries after the cursor, below the bound, in (xid, seq) order."""
    rows = db.observer.execute(PAGE_SQL, (*after, below)).fetchall()
    return [(int(xid), int(seq)) for xid, seq in rows]


def activity(db: Db, pid: int) -> dict[str, Any] | None:
    """The superuser's view of one backend (``backend_xid`` is a 32-bit ``xid``, as text)."""
    cur = db.observer.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT state, backend_type, backend_xid::text, backend_xmin::text, xact_start, wait_event_type,"
        " wait_event, query FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()


def widen(xid32: int, near: int) -> int:
    """The full (epoch-qualified) xid of a 32-bit xid assigned at or before full xid ``near``."""
    return near - (near - xid32) % 2**32


class Background:
    """One session running one blocking statement in a thread while the test goes on."""

    def __init__(self, conn: Conn, sql: str) -> None:
        self.pid = conn.info.backend_pid
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(conn, sql), daemon=True)
        self._thread.start()

    def _run(self, conn: Conn, sql: str) -> None:
        try:
            conn.execute(sql)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), f"backend {self.pid} did not finish"


def vacuum_progress(db: Db, pid: int) -> str | None:
    row = db.observer.execute("SELECT phase FROM pg_stat_progress_vacuum WHERE pid = %s", (pid,)).fetchone()
    return None if row is None else str(row[0])


def test_the_bound_needs_no_privilege_where_pg_stat_activity_shows_nothing(db: Db) -> None:
    """The role has CONNECT only: no superuser, no pg_read_all_stats, cannot even read the log.
    ``pg_stat_activity`` hides another role's ``xact_start`` from it (what the old watermark read),
    yet the bound it computes still stops at that role's open write."""
    with db.reader.connect() as conn:
        assert (
            conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
            is False
        )
        for powerful in ("pg_read_all_stats", "pg_monitor", "pg_read_all_data"):
            member = text("SELECT pg_has_role(current_user, :r, 'MEMBER')")
            assert conn.execute(member, {"r": powerful}).scalar_one() is False
        with pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("SELECT 1 FROM log"))

    with db.connect(name="open writer") as writer:
        w, _ = stamp(writer)
        with db.reader.connect() as conn:
            seen = conn.execute(
                text(
                    "SELECT xact_start, query, backend_xid::text AS xid FROM pg_stat_activity WHERE pid = :p"
                ),
                {"p": writer.info.backend_pid},
            ).one()
        assert seen.xact_start is None and seen.query == "<insufficient privilege>"
        assert seen.xid == str(w % 2**32)  # backend_xid, unlike xact_start, is shown to everyone
        assert bound(db.reader) <= w
        writer.rollback()


def test_a_running_vacuum_does_not_hold_the_bound_back(db: Db) -> None:
    """Manual ``VACUUM (VERBOSE)``, throttled so it is still scanning while we look: it has no xid
    (and GetSnapshotData in procarray.c leaves PROC_IN_VACUUM backends out even when one has one),
    but it has the ``xact_start`` and ``backend_xmin`` that held the old watermark back."""
    obs = db.observer
    obs.execute("CREATE TABLE big (id int, pad text) WITH (autovacuum_enabled = off)")
    obs.execute("INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 100000) i")
    obs.execute("DELETE FROM big WHERE id % 2 = 0")  # dead tuples for VACUUM to remove
    with db.connect(autocommit=True, name="vacuum") as vac:
        vac.execute("SET vacuum_cost_delay = '100ms'")  # ~0.1 s a page: ~1900 pages, minutes
        vac.execute("SET vacuum_cost_limit = 1")
        job = Background(vac, "VACUUM (VERBOSE) big")
        try:
            wait_for(lambda: vacuum_progress(db, job.pid), "VACUUM to start")
            x, _ = committed_write(db)
            bound_passes(db.reader, x)
            assert vacuum_progress(db, job.pid) is not None, "VACUUM ended before the bound was read"
            seen = activity(db, job.pid)
            assert seen is not None and seen["state"] == "active"
            assert seen["backend_xid"] is None
            assert seen["xact_start"] is not None and seen["backend_xmin"] is not None
        finally:
            obs.execute("SELECT pg_cancel_backend(%s)", (job.pid,))
            job.join()
    assert isinstance(job.error, psycopg.errors.QueryCanceled)


def test_an_autovacuum_worker_does_not_hold_the_bound_back(db: Db, admin_engine: Engine) -> None:
    """A real autovacuum worker on a table throttled by its reloptions. Needs
    ``autovacuum_naptime`` lowered for a few seconds (ALTER SYSTEM, reset afterwards) so that the
    launcher visits the fresh database at once rather than within a minute."""
    with admin_engine.connect() as conn:
        source = conn.execute(
            text("SELECT source FROM pg_settings WHERE name = 'autovacuum_naptime'")
        ).scalar()
        if source != "default":
            pytest.skip(f"autovacuum_naptime is set from {source}; not touching it")
    obs = db.observer
    obs.execute(
        "CREATE TABLE av (id int, pad text)"
        " WITH (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)"
    )
    obs.execute("INSERT INTO av SELECT i, repeat('x', 200) FROM generate_series(1, 100000) i")
    obs.execute("DELETE FROM av WHERE id % 2 = 0")
    obs.execute("SELECT pg_stat_force_next_flush()")  # publish the dead tuples to autovacuum
    worker_sql = (
        "SELECT p.pid FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a USING (pid)"
        " WHERE p.datname = current_database() AND p.relid = 'av'::regclass"
        " AND a.backend_type = 'autovacuum worker'"
    )

    def worker() -> int | None:
        row = obs.execute(worker_sql).fetchone()
        return None if row is None else int(row[0])

    pid: int | None = None
    try:
        with admin_engine.connect() as conn:
            conn.execute(text("ALTER SYSTEM SET autovacuum_naptime = '1s'"))
            conn.execute(text("SELECT pg_reload_conf()"))
        pid = wait_for(worker, "an autovacuum worker on av")
        x, _ = committed_write(db)
        bound_passes(db.reader, x)
        assert worker() == pid, "the autovacuum worker ended before the bound was read"
        seen = activity(db, pid)
        assert seen is not None and seen["backend_type"] == "autovacuum worker"
        assert seen["backend_xid"] is None and seen["xact_start"] is not None
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text("ALTER SYSTEM RESET autovacuum_naptime"))
            conn.execute(text("SELECT pg_reload_conf()"))
        if pid is not None:
            obs.execute("SELECT pg_cancel_backend(%s)", (pid,))
        # A relaunched worker would make this wait; the deadlock check then cancels it (1 s).
        obs.execute("ALTER TABLE av SET (autovacuum_enabled = off)")


def test_vacuum_full_takes_an_xid_and_holds_the_bound_back_until_it_ends(db: Db) -> None:
    """``VACUUM FULL`` rewrites the table under a new relfilenode: a catalog write, so an xid, and
    no PROC_IN_VACUUM. Frozen mid-rewrite by an index expression that waits on an advisory lock."""
    obs = db.observer
    obs.execute("CREATE TABLE full_t (id int) WITH (autovacuum_enabled = off)")
    obs.execute("INSERT INTO full_t SELECT generate_series(1, 1000)")
    obs.execute(
        "CREATE FUNCTION gate(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"
        " BEGIN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242);"
        " RETURN i; END $$"
    )
    obs.execute("CREATE INDEX full_t_gate ON full_t (gate(id))")
    with (
        db.connect(autocommit=True, name="gate") as gate,
        db.connect(autocommit=True, name="vacuum full") as vac,
    ):
        gate.execute("SELECT pg_advisory_lock(4242)")  # session lock: no xid
        job = Background(vac, "VACUUM (FULL, VERBOSE) full_t")
        try:
            seen = wait_for(
                lambda: a if (a := activity(db, job.pid)) and a["wait_event"] == "advisory" else None,
                "VACUUM FULL to wait at the gate",
            )
            assert seen["backend_xid"] is not None, "VACUUM FULL has no xid"
            phase = obs.execute("SELECT phase FROM pg_stat_progress_cluster WHERE pid = %s", (job.pid,))
            assert phase.fetchone() == ("rebuilding index",)
            x, _ = committed_write(db)
            v = widen(int(seen["backend_xid"]), near=x)
            assert v < x
            assert bound(db.reader) <= v
        finally:
            gate.execute("SELECT pg_advisory_unlock(4242)")
            job.join()
    assert job.error is None
    bound_passes(db.reader, x)


def test_pg_dump_does_not_hold_the_bound_back(db: Db) -> None:
    """pg_dump reads in one ``REPEATABLE READ, READ ONLY`` transaction: a snapshot, no xid. First a
    session that does the same and stays open; then a real pg_dump of the database, kept mid-COPY
    by not reading its stdout, which then completes, consistent with its old snapshot."""
    obs = db.observer
    obs.execute(
        "CREATE TABLE dump_t AS SELECT i AS id, md5(i::text) AS pad FROM generate_series(1, 100000) i"
    )

    with db.connect(autocommit=True, name="pg_dump lookalike") as snap:
        snap.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snap.execute("SELECT count(*) FROM dump_t")
        x, _ = committed_write(db)
        bound_passes(db.reader, x)
        seen = activity(db, snap.info.backend_pid)
        assert seen is not None and seen["state"] == "idle in transaction"
        assert seen["backend_xid"] is None and seen["backend_xmin"] is not None
        snap.execute("ROLLBACK")

    url = db.url
    pg_dump = Path("/usr/lib/postgresql/15/bin/pg_dump")
    command = str(pg_dump) if pg_dump.exists() else shutil.which("pg_dump")
    assert command, "pg_dump not found"
    env = {**os.environ, "PGPASSWORD": url.password or "", "PGAPPNAME": "pg_dump"}
    args = [
        command,
        "-w",
        "-h",
        str(url.host),
        "-p",
        str(url.port),
        "-U",
        str(url.username),
        "-d",
        str(url.database),
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        dumping_sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'pg_dump' AND query LIKE 'COPY public.dump_t %%'"
        )

        def dumping() -> int | None:
            row = obs.execute(dumping_sql).fetchone()
            return None if row is None else int(row[0])

        pid = wait_for(dumping, "pg_dump to be copying dump_t")
        x, _ = committed_write(db)
        bound_passes(db.reader, x)
        assert proc.poll() is None, "pg_dump ended before the bound was read"
        seen = activity(db, pid)
        assert seen is not None and seen["backend_xid"] is None and seen["backend_xmin"] is not None
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    dump = out.decode()
    assert "-- PostgreSQL database dump complete" in dump
    log_data = dump.split("COPY public.log (xid, seq) FROM stdin;\n", 1)[1].split("\\.\n", 1)[0]
    assert not any(line.startswith(f"{x}\t") for line in log_data.splitlines())  # after its snapshot


def test_an_idle_reading_transaction_does_not_hold_the_bound_back(db: Db) -> None:
    """``BEGIN; SELECT 1;`` left open (the old watermark stopped at its ``xact_start``)."""
    with db.connect(name="idle reader") as idle:
        idle.execute("SELECT 1")
        idle.execute("SELECT count(*) FROM t")
        x, _ = committed_write(db)
        bound_passes(db.reader, x)
        seen = activity(db, idle.info.backend_pid)
        assert seen is not None and seen["state"] == "idle in transaction"
        assert seen["backend_xid"] is None and seen["xact_start"] is not None
        idle.rollback()


@pytest.mark.parametrize("end", ["rollback", "commit"])
def test_an_idle_writing_transaction_holds_the_bound_at_its_xid_until_it_ends(db: Db, end: str) -> None:
    with db.connect(name="idle writer") as idle:
        w = stamp(idle)
        x = committed_write(db)
        assert w[0] < x[0]
        assert bound(db.reader) <= w[0]
        assert x not in page(db, START, bound(db.reader))  # committed, but not yet below the bound
        getattr(idle, end)()
    entries = page(db, START, bound_passes(db.reader, x[0]))
    assert x in entries
    assert (w in entries) is (end == "commit")


def test_a_writer_in_another_database_holds_the_bound_back(
    db: Db, settings: Settings, admin_engine: Engine
) -> None:
    """Known limit: xids and snapshots are cluster-wide, so any database's open writer counts."""
    other = f"t_{uuid.uuid4().hex[:12]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{other}"'))
    try:
        other_url = settings.source_url.set(database=other)
        with connect(other_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE elsewhere (id int)")
        with connect(other_url, name="writer elsewhere") as elsewhere:
            elsewhere.execute("INSERT INTO elsewhere VALUES (1)")
            row = elsewhere.execute(IF_ASSIGNED_SQL).fetchone()
            assert row is not None and row[0] is not None
            w = int(row[0])
            x, _ = committed_write(db)
            assert w < x
            assert bound(db.reader) <= w
            elsewhere.rollback()
        bound_passes(db.reader, x)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)'))


def test_a_prepared_transaction_holds_the_bound_back_and_its_entry_is_not_lost(db: Db) -> None:
    """A prepared transaction outlives its session and keeps its xid running until
    COMMIT/ROLLBACK PREPARED; once committed, its entry is read below the bound like any other."""
    obs = db.observer
    gid = f"log_bound_{uuid.uuid4().hex}"
    try:
        with db.connect(autocommit=True, name="preparer") as preparer:
            preparer.execute("BEGIN")
            p = stamp(preparer)
            preparer.execute(f"PREPARE TRANSACTION '{gid}'")
        # the session is closed; the transaction is not
        row = obs.execute("SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert row.fetchone() == (p[0] % 2**32,)
        x = committed_write(db)
        assert p[0] < x[0]
        assert bound(db.reader) <= p[0]
        assert p not in page(db, START, 2**62)  # not committed: invisible even without a bound
        obs.execute(f"COMMIT PREPARED '{gid}'")
        entries = page(db, START, bound_passes(db.reader, x[0]))
        assert entries == sorted([p, x])
    finally:
        if obs.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (gid,)).fetchone():
            obs.execute(f"ROLLBACK PREPARED '{gid}'")


def test_out_of_order_commits_never_let_a_keyset_reader_skip_an_entry(db: Db) -> None:
    """T1 writes first (lower xid), T2 writes later and commits first. The bound stays at or
    below T1's xid until T1 commits, so the reader's cursor never gets past T1's entries; a
    reader that trusted commit visibility alone would already have moved past them."""
    e0 = committed_write(db)
    with db.connect(name="T1") as t1, db.connect(name="T2") as t2:
        e1 = [stamp(t1), stamp(t1)]
        e2 = stamp(t2)
        t2.commit()
        assert e0[0] < e1[0][0] < e2[0]

        first = page(db, START, bound_passes(db.reader, e0[0]))
        assert bound(db.reader) <= e1[0][0]
        assert first == [e0]
        cursor = first[-1]
        visible = db.observer.execute("SELECT max(xid) FROM log").fetchone()
        assert visible == (e2[0],)  # a "read what is committed" cursor would be past T1 already

        t1.commit()
    second = page(db, cursor, bound_passes(db.reader, e2[0]))
    assert second == [*e1, e2]


def test_which_transactions_get_an_xid(db: Db) -> None:
    """Only a transaction with an xid can hold the bound back. Plain reads never get one;
    pg_current_xact_id() forces one (even READ ONLY); a savepoint's write is stamped with the
    top-level xid, which stays assigned after ROLLBACK TO SAVEPOINT."""
    db.observer.execute("INSERT INTO t SELECT generate_series(1, 10)")
    db.observer.execute("CREATE SEQUENCE fresh")
    with db.connect(autocommit=True, name="probe") as conn:

        def xid_after(*statements: str) -> int | None:
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(statement)
            row = conn.execute(IF_ASSIGNED_SQL).fetchone()
            conn.execute("ROLLBACK")
            assert row is not None
            return None if row[0] is None else int(row[0])

        assert xid_after("SET TRANSACTION READ ONLY", "SELECT * FROM t") is None
        assert xid_after("SELECT * FROM t") is None
        assert xid_after("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SELECT * FROM t") is None
        assert xid_after("LOCK TABLE t IN SHARE MODE") is None
        assert xid_after("SELECT * FROM t FOR UPDATE") is not None  # row locks are written
        assert xid_after("LOCK TABLE t IN ACCESS EXCLUSIVE MODE") is not None  # WAL-logged for standbys
        assert xid_after("ANALYZE t") is not None  # writes pg_statistic
        assert xid_after("SELECT nextval('fresh')") is not None  # WAL-logs the sequence (1 in 32 calls)
        assert xid_after("SET TRANSACTION READ ONLY", "SELECT pg_current_xact_id()") is not None

        conn.execute("BEGIN READ ONLY")
        forced = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert forced is not None and conn.execute(IF_ASSIGNED_SQL).fetchone() == forced
        conn.execute("ROLLBACK")

        conn.execute("BEGIN")
        conn.execute("SAVEPOINT s")
        row = conn.execute(
            "INSERT INTO log (xid) VALUES (pg_current_xact_id()::text::bigint)"
            " RETURNING xid, xmin::text::bigint"
        ).fetchone()
        assert row is not None
        stamped, row_xmin = row
        assert conn.execute(IF_ASSIGNED_SQL).fetchone() == (stamped,)  # the top-level xid
        assert row_xmin != stamped % 2**32  # the row itself carries the subtransaction's xid
        conn.execute("ROLLBACK TO SAVEPOINT s")
        assert conn.execute(IF_ASSIGNED_SQL).fetchone() == (stamped,)  # still holds the bound
        assert bound(db.reader) <= stamped
        conn.execute("ROLLBACK")
