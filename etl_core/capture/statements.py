"""The statements of a source with change capture: backfill by key, then the change log in
snapshot deltas.

Every statement is one round trip, for the whole lane. A batch of the log is every entry that
the batch's snapshot sees and the snapshot before it did not (:mod:`etl_core.model.snapshot`). Both
tests are plain comparisons on the log's ``(xid, seq)`` key: an entry the earlier snapshot did
not see has an xid in its in-progress list or at or above its ``xmax``, so a transaction open
for hours costs one index probe, not a scan, and holds back nothing but its own entries. No
statement needs a privilege beyond SELECT on the log and the source.

Each statement also returns its own snapshot: the external version of every document it read
(:meth:`Snapshot.external_version`), which only grows, as content read later is never older.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Delete,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import CTE, Subquery, TableClause

from etl_core.capture.triggers import Tracking
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Key, LogCursor
from etl_core.model.snapshot import Snapshot

SNAPSHOT: ColumnElement[str] = cast(func.pg_current_snapshot(), Text)
"""The statement's own snapshot, as text (``xmin:xmax:xip,…``)."""


def snapshot_statement() -> Select[Any, Any]:
    return select(SNAPSHOT.label("snapshot"), func.now().label("now"))


def _xids(values: tuple[int, ...]) -> ColumnElement[Any]:
    return literal(list(values), ARRAY(BigInteger))


def entry_keys(log: TableClause) -> ColumnElement[Any]:
    """An entry's keys: the array one statement logged, or the single key an entry of an earlier
    release held."""
    return func.coalesce(log.c["keys"], array([log.c.key]))


def unseen(log: TableClause, since: Snapshot) -> ColumnElement[bool]:
    """Entries ``since`` did not see: in its in-progress list, or at or above its xmax (by index)."""
    return or_(log.c.xid == any_(_xids(since.xip)), log.c.xid >= since.xmax)


def seen(log: TableClause, snapshot: Snapshot) -> ColumnElement[bool]:
    """Entries ``snapshot`` sees (all committed: a rolled-back transaction leaves no entry)."""
    return and_(log.c.xid < snapshot.xmax, not_(log.c.xid == any_(_xids(snapshot.xip))))


def backfill_statement(
    src: Subquery,
    fields: tuple[str, ...],
    key: str,
    after: Key | BindParameter[Any] | None,
    limit: int,
    until: Key | None = None,
    built: BuiltColumns = NO_BUILT_COLUMNS,
) -> Select[Any]:
    """A keyset page of the source by key (up to ``until``, inclusive, for a shard), with the
    statement's snapshot as its first column and the lane's SQL-built columns (``built``) after
    the fields. ``after``: the last key of the page before (a value, or a parameter for a
    statement built once and run for every page)."""
    stmt = select(
        select(SNAPSHOT).scalar_subquery().label("etl_snapshot"),
        *built.record(src.c, fields),
        *built.select(src.c),
    )
    if after is not None:
        stmt = stmt.where(src.c[key] > after)
    if until is not None:
        stmt = stmt.where(src.c[key] <= until)
    return stmt.order_by(src.c[key]).limit(limit)


def _roots(tracking: Tracking, entries: CTE, after: Key | None) -> CTE:
    """The root keys after ``after`` of a batch's entries, duplicates kept (the page takes the
    distinct ones): the root table's and link tables' values are root keys; a parent's value
    walks its declared path (one join per hop) to the root keys it affects.

    ``UNION ALL`` and one ``DISTINCT`` on the page, not a ``UNION``: a statement that resolves
    keys resolves what is left of its batch, and a ``UNION`` sized its hash table from the hop
    joins' estimate (a hundred thousand rows, for a parent's fan-out the batch need not hold at
    all). With 1 % of a million rows changed (10 000 keys) that took the root keys of a page
    from 11-12 ms to 21-23 ms, and the batch's eleven page statements about 15 % longer."""
    root_type = tracking.root.c[tracking.key].type
    direct = [tracking.root.name] + [t.table.name for t in tracking.joined if not t.path]
    first = cast(entries.c.key, root_type)
    parts = [
        select(first.label("root")).where(
            entries.c.tbl.in_(direct), *(() if after is None else (first > after,))
        )
    ]
    for tracked in tracking.joined:
        if not tracked.path:
            continue
        value: ColumnElement[Any] | None = None
        joined: Any = entries
        for i, hop in enumerate(tracked.path):
            step = hop.table.alias(f"hop_{tracked.table.name}_{i}")
            match = step.c[hop.match]
            on = match == (cast(entries.c.key, match.type) if value is None else value)
            joined = joined.join(step, on)
            value = step.c[hop.to]
        assert value is not None
        root = cast(value, root_type)
        parts.append(
            select(root.label("root"))
            .select_from(joined)
            .where(entries.c.tbl == tracked.table.name, *(() if after is None else (root > after,)))
        )
    return union_all(*parts).cte("roots")


def _window(log: TableClause, since: Snapshot, batch: Snapshot | None) -> list[ColumnElement[bool]]:
    return [unseen(log, since)] if batch is None else [unseen(log, since), seen(log, batch)]


def _batch_roots(
    tracking: Tracking, since: Snapshot, batch: Snapshot | None, after: Key | None, limit: int
) -> tuple[CTE, ColumnElement[Any]]:
    """The batch's next ``limit`` distinct root keys after ``after`` (a CTE ``page``), and
    whether the batch truncated a table (the tables' names, or NULL)."""
    log = tracking.log_table
    window = _window(log, since, batch)
    entries = select(log.c.tbl, func.unnest(entry_keys(log)).label("key")).where(*window).cte("entries")
    truncated = select(func.array_agg(log.c.tbl.distinct())).where(*window, log.c.op == "T")
    roots = _roots(tracking, entries, after)
    found = select(roots.c.root).where(roots.c.root.is_not(None))  # a parent with no child: no key
    page = found.distinct().order_by(roots.c.root).limit(limit).cte("page")
    return page, truncated.scalar_subquery()


def log_page_statement(
    src: Subquery,
    fields: tuple[str, ...],
    key: str,
    tracking: Tracking,
    since: Snapshot,
    batch: Snapshot | None,
    after: Key | None,
    limit: int,
    built: BuiltColumns = NO_BUILT_COLUMNS,
) -> Select[Any]:
    """The next ``limit`` root keys after ``after`` of the batch ``since`` → ``batch``, joined to
    the source by key: one row per document (its source columns NULL when the row is gone), each
    key once however many statements changed it, every row carrying the statement's snapshot.
    With no key left it is still one row, so the batch's end is known.

    ``batch`` None starts a new batch at the statement's own snapshot: it sees exactly what that
    snapshot sees, and the snapshot it returns is the batch's for the pages that follow."""
    page, truncated = _batch_roots(tracking, since, batch, after, limit)
    snap = select(SNAPSHOT.label("snapshot"), truncated.label("truncated")).cte("snap")
    return (
        select(
            snap.c.snapshot.label("etl_snapshot"),
            page.c.root.label("etl_root"),
            *built.record(src.c, fields),
            *built.select(src.c),
            snap.c.truncated.label("etl_truncated"),
        )
        .select_from(snap.outerjoin(page, true()).outerjoin(src, src.c[key] == page.c.root))
        .order_by(page.c.root)
    )


def log_keys_statement(
    tracking: Tracking, since: Snapshot, batch: Snapshot, after: Key, limit: int
) -> Select[Any]:
    """One row: the statement's snapshot, the tables the batch truncated, and the batch's next
    ``limit`` root keys after ``after`` as one sorted array.

    A batch longer than a page resolves its root keys this way, many pages' worth at a time, and
    reads each page's rows by key (:func:`log_rows_statement`). Resolving them again on every
    page, as :func:`log_page_statement` would, cost each page the whole rest of the batch: a
    category rename reaching 105 752 of a million products walked the link table's rows past
    the page on each of its 106 pages, 24 s of PostgreSQL CPU for the sync (benchmarks/README.md,
    "Issue 22, third session").
    """
    page, truncated = _batch_roots(tracking, since, batch, after, limit)
    keys = select(func.array_agg(aggregate_order_by(page.c.root, page.c.root))).scalar_subquery()
    return select(SNAPSHOT.label("etl_snapshot"), truncated.label("etl_truncated"), keys.label("etl_keys"))


def log_rows_statement(
    src: Subquery,
    fields: tuple[str, ...],
    key: str,
    tracking: Tracking,
    built: BuiltColumns = NO_BUILT_COLUMNS,
) -> Select[Any]:
    """The rows of the root keys in the parameter ``keys`` (a sorted array, as
    :func:`log_keys_statement` returns them), in the shape of a :func:`log_page_statement` page
    (no truncation column value: the keys' statement had it). Built once per batch and run for
    each of its pages."""
    root_type = tracking.root.c[tracking.key].type  # the keys' type, as on the batch's first page
    keys = bindparam("keys", type_=ARRAY(root_type))
    page = select(func.unnest(keys, type_=root_type).label("root")).subquery("page")
    return (
        select(
            select(SNAPSHOT).scalar_subquery().label("etl_snapshot"),
            page.c.root.label("etl_root"),
            *built.record(src.c, fields),
            *built.select(src.c),
            null().label("etl_truncated"),
        )
        .select_from(page.outerjoin(src, src.c[key] == page.c.root))
        .order_by(page.c.root)
    )


def log_lag_statement(
    src: Subquery, key: str, tracking: Tracking, cursors: Mapping[str, LogCursor | None]
) -> Select[Any]:
    """One statement for a lane: per version, the keys of the committed entries it has not been
    delivered (the statement sees only committed ones) and the age of the oldest entry. A backfilling version
    also counts the source rows past its key; a version never synced, every row. A version in
    the middle of a batch counts the whole batch until it ends."""
    log = tracking.log_table
    columns: list[ColumnElement[Any]] = [func.now().label("now")]
    for name, cursor in cursors.items():
        if cursor is None:
            entries: ColumnElement[Any] = select(func.count()).select_from(src).scalar_subquery()
            oldest: ColumnElement[Any] = literal(None)
        else:
            waiting = unseen(log, cursor.since)
            changed = func.coalesce(func.sum(func.cardinality(entry_keys(log))), 0)
            entries = select(changed).where(waiting).scalar_subquery()
            oldest = select(func.min(log.c.at)).where(waiting).scalar_subquery()
            if cursor.backfilling:
                rows = select(func.count()).select_from(src).where(src.c[key] > cursor.key)
                entries = entries + rows.scalar_subquery()
        columns += [entries.label(f"rows_{name}"), oldest.label(f"oldest_{name}")]
    return select(*columns, OPEN_TRANSACTIONS.label("open_transactions"), *log_upkeep_columns(tracking))


def log_upkeep_columns(tracking: Tracking) -> list[ColumnElement[Any]]:
    """The log's size on disk, its row estimate (the planner's, no scan) and its oldest entry's
    start: what a lagging or never-started version lets grow."""
    log = tracking.log_table
    relation = func.to_regclass(f"{tracking.schema}.{log.name}")
    estimate = select(func.greatest(literal_column("reltuples"), 0)).select_from(text("pg_class"))
    return [
        func.pg_total_relation_size(relation).label("log_bytes"),
        estimate.where(literal_column("oid") == relation).scalar_subquery().label("log_entries_estimate"),
        select(log.c.at).order_by(log.c.xid, log.c.seq).limit(1).scalar_subquery().label("log_oldest"),
    ]


OPEN_TRANSACTIONS: ColumnElement[Any] = literal_column(
    """(
    SELECT coalesce(json_agg(t ORDER BY t.age_s DESC NULLS LAST), '[]')
    FROM (
        SELECT 'session' AS kind, pid::text AS id, datname AS database, usename AS "user",
               state, backend_xid::text AS xid,
               round(extract(epoch FROM now() - xact_start)::numeric, 1) AS age_s
        FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname = current_database() AND pid <> pg_backend_pid()
        UNION ALL
        SELECT 'prepared', gid, database, owner::text, 'prepared', transaction::text,
               round(extract(epoch FROM now() - prepared)::numeric, 1)
        FROM pg_prepared_xacts
        WHERE database = current_database()
        ORDER BY age_s DESC NULLS LAST
        LIMIT 10
    ) t
)"""
)
"""The transactions of the source's database that hold an xid (the oldest ten): whatever they
wrote is delivered when they commit, and nothing else waits for them. Without pg_read_all_stats
another role's session shows no state or age."""


def pending_statement(tracking: Tracking, since: Snapshot) -> Select[Any]:
    """Whether committed entries wait that ``since`` did not see (one index probe)."""
    log = tracking.log_table
    return select(select(log.c.seq).where(unseen(log, since)).exists())


def trim_statement(tracking: Tracking, slowest: Snapshot) -> Delete:
    """Entries every non-retired version has been delivered: those the slowest one's snapshot saw."""
    return tracking.log_table.delete().where(seen(tracking.log_table, slowest))
