"""The statements of a source with change capture: backfill by key, then follow the change log.

Every statement is one round trip, for the whole lane, and carries its own safe bound: the xmin
of the statement's snapshot (``pg_snapshot_xmin(pg_current_snapshot())``). Every transaction
below it has ended, so no log entry can still appear below it; reading it needs no privilege
(``tests/integration/test_log_bound.py`` proves what holds it back and what does not). The same
xmin is the external version of every document the statement reads: it only grows, and content
read under a later snapshot is never older.
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
    cast,
    func,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy import union as sql_union
from sqlalchemy.sql.selectable import CTE, Subquery

from etl_core.cursor import Key, LogCursor
from etl_core.tracking import Tracking

XMIN: ColumnElement[int] = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
"""Every transaction with an id below this has ended (committed or rolled back)."""


def bound_statement() -> Select[Any, Any]:
    return select(XMIN.label("xmin"), func.now().label("now"))


def backfill_statement(
    src: Subquery, fields: tuple[str, ...], key: str, after: Key | None, limit: int, until: Key | None = None
) -> Select[Any]:
    """A keyset page of the source by key (up to ``until``, inclusive, for a shard), with the
    statement's xmin as its first column."""
    xmin = select(XMIN).scalar_subquery()
    stmt = select(xmin.label("etl_xmin"), *(src.c[f] for f in fields))
    if after is not None:
        stmt = stmt.where(src.c[key] > after)
    if until is not None:
        stmt = stmt.where(src.c[key] <= until)
    return stmt.order_by(src.c[key]).limit(limit)


def _roots(tracking: Tracking, entries: CTE) -> CTE:
    """Root keys of a page's entries: the root table's and link tables' values are root keys;
    a parent's value walks its declared path (one join per hop) to the root keys it affects."""
    root_type = tracking.root.c[tracking.key].type
    direct = [tracking.root.name] + [t.table.name for t in tracking.joined if not t.path]
    parts = [select(cast(entries.c.key, root_type).label("root")).where(entries.c.tbl.in_(direct))]
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
        parts.append(
            select(cast(value, root_type).label("root"))
            .select_from(joined)
            .where(entries.c.tbl == tracked.table.name)
        )
    return sql_union(*parts).cte("roots")


def log_page_statement(
    src: Subquery, fields: tuple[str, ...], key: str, tracking: Tracking, after: LogCursor, limit: int
) -> Select[Any]:
    """The next ``limit`` log entries below the bound, resolved to root keys, joined to the
    source by key: one row per affected document (its source columns NULL when the row is gone),
    every row carrying the bound, the page's last entry and how many entries it read. With no
    document to show it is still one row, so the page's end is known."""
    log = tracking.log_table
    bound = select(XMIN.label("xmin")).cte("bound")
    entries = (
        select(log.c.xid, log.c.seq, log.c.tbl, log.c.key)
        .where(
            tuple_(log.c.xid, log.c.seq) > tuple_(literal(after.major), literal(after.minor)),
            log.c.xid < select(bound.c.xmin).scalar_subquery(),
        )
        .order_by(log.c.xid, log.c.seq)
        .limit(limit)
        .cte("entries")
    )
    last = (
        select(entries.c.xid, entries.c.seq, func.count().over().label("n"))
        .order_by(entries.c.xid.desc(), entries.c.seq.desc())
        .limit(1)
        .cte("last_entry")
    )
    roots = _roots(tracking, entries)
    return (
        select(
            bound.c.xmin.label("etl_xmin"),
            last.c.xid.label("etl_last_xid"),
            last.c.seq.label("etl_last_seq"),
            last.c.n.label("etl_entries"),
            roots.c.root.label("etl_root"),
            *(src.c[f] for f in fields),
        )
        .select_from(
            bound.outerjoin(last, true())
            .outerjoin(roots, last.c.n.is_not(None))
            .outerjoin(src, src.c[key] == roots.c.root)
        )
        .order_by(roots.c.root)
    )


def log_lag_statement(
    src: Subquery, key: str, tracking: Tracking, cursors: Mapping[str, LogCursor | None]
) -> Select[Any]:
    """One statement for a lane: per version, what it still has to read and, for a version that
    follows the log, the age of its oldest unread entry. A backfilling version counts the source
    rows past its key plus the entries since its bound."""
    log = tracking.log_table
    bound = select(XMIN).scalar_subquery()
    columns: list[ColumnElement[Any]] = [func.now().label("now")]
    for name, cursor in cursors.items():
        after = LogCursor.log(0, 0) if cursor is None else cursor.hand_over()
        unread = (tuple_(log.c.xid, log.c.seq) > tuple_(literal(after.major), literal(after.minor))) & (
            log.c.xid < bound
        )
        entries: ColumnElement[Any] = select(func.count()).where(unread).scalar_subquery()
        oldest: ColumnElement[Any] = select(func.min(log.c.at)).where(unread).scalar_subquery()
        if cursor is None or cursor.backfilling:
            rows = select(func.count()).select_from(src)
            if cursor is not None:
                rows = rows.where(src.c[key] > cursor.major)
            entries = entries + rows.scalar_subquery()
            oldest = literal(None)
        columns += [entries.label(f"rows_{name}"), oldest.label(f"oldest_{name}")]
    return select(*columns)


def trim_statement(tracking: Tracking, below: LogCursor) -> Delete:
    """Entries every non-retired version has read (``below`` is the slowest one's position)."""
    log = tracking.log_table
    return log.delete().where(
        tuple_(log.c.xid, log.c.seq) <= tuple_(literal(below.major), literal(below.minor))
    )
