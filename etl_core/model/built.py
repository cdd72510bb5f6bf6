"""Documents and predicates built in PostgreSQL, for versions that declare them.

A version's ``document_sql`` (and ``predicate_sql``) is a function of the source's columns (the
page query's subquery, ``c.name``, ``c.price_cents``, …) that returns a SQLAlchemy expression. A
lane adds one column per expression to its one page query, so a page arrives with each
SQL-built version's document already serialised (JSON text as UTF-8 bytes, ``convert_to``):
Python only frames the ``_bulk`` line. Python-transformed versions in the same lane read the same
rows from the same statement; nothing else changes.

The version keeps its Python ``transform`` as the document's definition: validation compares
every indexed document with it (so a SQL twin of a Python version is proved equal on every row),
and reconcile and replay, which read rows by key, build documents with it. ``document_sql`` may
return NULL for a row it cannot build (``CASE WHEN name IS NULL THEN NULL ELSE … END``): the row
becomes a dead letter of that version, as a transform that raises does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, Text, cast, func, literal, null
from sqlalchemy.sql import ColumnElement

if TYPE_CHECKING:
    from etl_core.model.versions import IndexVersion

Columns = Any
"""The page query's columns (``subquery.c``): ``c.<name>`` for every column the source selects."""
SqlExpression = Callable[[Columns], ColumnElement[Any]]


@dataclass(frozen=True, slots=True)
class Slots:
    """Where one version finds its values in a row's built columns."""

    document: int | None
    predicate: int | None


@dataclass(frozen=True, slots=True)
class BuiltColumns:
    """The SQL-built columns of a lane, in the order the page query selects them after the
    source's own, and each version's slots among them."""

    expressions: tuple[tuple[str, SqlExpression, bool], ...] = ()
    """(label, builder, is_document): a document is selected as its JSON's UTF-8 bytes."""
    slots: Mapping[str, Slots] = field(default_factory=dict)
    keep: frozenset[str] | None = None
    """The record fields Python still reads, when every version of the lane is built in SQL
    (the key, the change column, the delete flag); the others are selected as NULL, so the page
    does not ship and decode what nothing reads. None: the whole record."""

    @classmethod
    def of(cls, versions: Iterable[IndexVersion[Any]], keep: Iterable[str | None] = ()) -> BuiltColumns:
        """The lane's columns; ``keep``: the fields a change needs whatever the documents (the
        source's key, change column and delete flag), for a lane built wholly in SQL."""
        versions = list(versions)
        expressions: list[tuple[str, SqlExpression, bool]] = []
        slots: dict[str, Slots] = {}
        for v in versions:
            document = predicate = None
            if v.document_sql is not None:
                document = len(expressions)
                expressions.append((f"etl_doc_{v.key}", v.document_sql, True))
            if v.predicate_sql is not None:
                predicate = len(expressions)
                expressions.append((f"etl_wants_{v.key}", v.predicate_sql, False))
            if document is not None or predicate is not None:
                slots[v.key] = Slots(document, predicate)
        lean = bool(versions) and all(
            v.document_sql is not None and (v.predicate is None or v.predicate_sql is not None)
            for v in versions
        )
        kept = frozenset(f for f in keep if f is not None) if lean and keep else None
        return cls(tuple(expressions), slots, kept)

    def record(self, columns: Columns, fields: Iterable[str]) -> list[ColumnElement[Any]]:
        """The record's columns over ``columns`` (a statement's subquery), in field order: NULL
        for a field no one reads in a lane built wholly in SQL."""
        keep = self.keep
        return [columns[f] if keep is None or f in keep else null().label(f) for f in fields]

    def __bool__(self) -> bool:
        return bool(self.expressions)

    def select(self, columns: Columns) -> list[ColumnElement[Any]]:
        """The expressions over ``columns`` (a statement's subquery), labelled, to add to its
        select list right after the source's fields."""
        selected: list[ColumnElement[Any]] = []
        for label, build, is_document in self.expressions:
            expression = build(columns)
            if is_document:
                expression = func.convert_to(cast(expression, Text), literal("UTF8", String))
            selected.append(expression.label(label))
        return selected


NONE = BuiltColumns()


def isoformat(column: ColumnElement[Any]) -> ColumnElement[str]:
    """A ``timestamptz`` as Python's ``datetime.isoformat()`` writes the value psycopg returns for
    it (the session's time zone, microseconds only when there are some, ``+HH:MM``), so a
    SQL-built document equals a Python transform's that calls ``.isoformat()``."""
    micro = func.nullif(func.to_char(column, literal(".US", String)), literal(".000000", String))
    return (
        func.to_char(column, literal('YYYY-MM-DD"T"HH24:MI:SS', String))
        + func.coalesce(micro, literal("", String))
        + func.to_char(column, literal("TZH:TZM", String))
    )
