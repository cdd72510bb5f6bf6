"""A source: any SQLAlchemy Core selectable that yields one row per document.

The catalogue is one instance of this, not a special case. The source knows which column is the
document key, which is the change column that orders changes, and (optionally) which column marks a
soft delete. It builds the two statements the pipeline ever sends: the high watermark and the
keyset page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, bindparam, func, select, text, tuple_
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from etl_core.capture.triggers import Tracking
from etl_core.errors import ConfigError
from etl_core.model.built import NONE as NO_BUILT_COLUMNS
from etl_core.model.built import BuiltColumns
from etl_core.model.cursor import Cursor

R = TypeVar("R")

# In-flight transactions stamp rows with their *start* time (``now()``), so nothing that is still
# running can commit below the oldest running transaction's start. Our own session is excluded,
# and so are sessions of other databases: they cannot write this source's tables.
# The third column says whether this role sees every session there: without pg_read_all_stats (or
# superuser) other roles' transactions show no xact_start, and the watermark would pass them.
WATERMARK_SQL = text(
    """
    SELECT least(now(), min(xact_start)) - make_interval(secs => :lag) AS watermark, now() AS now,
           pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
             OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS sees_all
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
      AND xact_start IS NOT NULL
    """
)


@dataclass(frozen=True, slots=True)
class Source(Generic[R]):
    """One row per document: ``record_type`` is the frozen, slotted DTO a row becomes.

    ``record_type``'s fields must be a subset of the selectable's columns; it is built positionally
    from exactly those columns, in the dataclass's field order, which is why the page statement
    selects them in that order.
    """

    name: str
    selectable: Select[Any]
    record_type: type[R]
    key: str
    changed: str | None = None
    """A trusted change column (stamped by the application, monotonic per row): changes are read
    in its order. Leave it out and declare ``tracking`` instead to use change capture."""
    deleted: str | None = None
    tracking: Tracking | None = None
    """Generated change capture (:mod:`etl_core.capture.triggers`): hard deletes, parent changes without
    rewriting rows, no privilege needed. Takes precedence over ``changed``."""
    alias: str | None = None
    """The alias readers query (the cut-over moves it between versions); default the source's
    name. The command line and the Dagster jobs both read it here, so they move the same alias."""
    _fields: tuple[str, ...] = field(init=False, repr=False)

    @property
    def read_alias(self) -> str:
        return self.alias or self.name

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.record_type):
            raise ConfigError(
                f"source {self.name!r}: record_type {self.record_type!r} must be a dataclass "
                "(declare it with @dataclass(frozen=True, slots=True))"
            )
        params = getattr(self.record_type, "__dataclass_params__", None)
        if params is None or not params.frozen or not hasattr(self.record_type, "__slots__"):
            raise ConfigError(
                f"source {self.name!r}: record_type {self.record_type.__name__} must be frozen "
                "and slotted: @dataclass(frozen=True, slots=True)"
            )
        fields = tuple(f.name for f in dataclasses.fields(self.record_type))
        columns = set(self.selectable.selected_columns.keys())
        if self.changed is None and self.tracking is None:
            raise ConfigError(
                f"source {self.name!r}: declare how changes are found: tracking=Tracking(...) "
                "(generated change capture, recommended) or changed='<a trusted change column>'"
            )
        if self.tracking is not None and self.tracking.source != self.name:
            raise ConfigError(
                f"source {self.name!r}: its tracking is declared for source {self.tracking.source!r}; "
                f"use Tracking({self.name!r}, ...)"
            )
        for role, column in (
            ("key", self.key),
            ("changed", self.changed),
            ("deleted", self.deleted),
        ):
            if column is not None and column not in columns:
                raise ConfigError(
                    f"source {self.name!r}: {role} column {column!r} is not selected; "
                    f"selected columns are {sorted(columns)}"
                )
            if column is not None and column not in fields:
                raise ConfigError(
                    f"source {self.name!r}: {role} column {column!r} is not a field of "
                    f"{self.record_type.__name__}; add it to the record type"
                )
        missing = [f for f in fields if f not in columns]
        if missing:
            raise ConfigError(
                f"source {self.name!r}: {self.record_type.__name__} needs columns {missing} that "
                f"the selectable does not select; add them to the select or drop the fields"
            )
        object.__setattr__(self, "_fields", fields)

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    @property
    def captured(self) -> bool:
        """Changes come from the generated change log, not from a change column."""
        return self.tracking is not None

    @property
    def changed_column(self) -> str:
        if self.changed is None:
            raise ConfigError(f"source {self.name!r} has no change column; it uses change capture")
        return self.changed

    def position_getter(self) -> Callable[[R], Cursor]:
        get = attrgetter(self.changed_column, self.key)
        return lambda record: Cursor._make(get(record))

    def deleted_getter(self) -> Callable[[R], bool]:
        if self.deleted is None:
            return lambda record: False
        get = attrgetter(self.deleted)
        # A soft-delete column may be a flag or a timestamp; either way "set" means deleted.
        return lambda record: bool(get(record))

    def subquery(self) -> Subquery:
        return self._subquery()

    def _subquery(self) -> Subquery:
        return self.selectable.subquery(f"{self.name}_src")

    def page_statement(
        self, below: datetime, limit: int, built: BuiltColumns = NO_BUILT_COLUMNS, *, resumed: bool = False
    ) -> Select[Any]:
        """The one statement per page: keyset on ``(changed, key)``, bounded by the watermark;
        the record's fields, then the lane's SQL-built columns. ``resumed``: the page starts after
        the parameters ``after_changed`` and ``after_key``, so one statement, built once, serves
        every page of a walk after its first."""
        src = self._subquery()
        changed, key = src.c[self.changed_column], src.c[self.key]
        where: list[ColumnElement[bool]] = [changed < below]
        if resumed:
            start = tuple_(
                bindparam("after_changed", type_=changed.type), bindparam("after_key", type_=key.type)
            )
            where.append(tuple_(changed, key) > start)
        columns = [*built.record(src.c, self._fields), *built.select(src.c)]
        return select(*columns).where(*where).order_by(changed, key).limit(limit)

    def head_statement(self) -> Select[Any, Any]:
        """The newest change position, by a backward walk of the keyset index (not ``max()``,
        which PostgreSQL cannot answer from an index through a join)."""
        src = self._subquery()
        changed, key = src.c[self.changed_column], src.c[self.key]
        return select(changed, key).order_by(changed.desc(), key.desc()).limit(1)

    def lag_statement(self, cursors: Mapping[str, Cursor | None]) -> Select[Any]:
        """One statement for a whole lane: the head position and, per version, the rows past its
        cursor. Scans only from the slowest cursor on, so it is cheap once a lane is caught up."""
        src = self._subquery()
        changed, key = src.c[self.changed_column], src.c[self.key]
        head = self.head_statement().subquery("head")
        counts = []
        for name, cursor in cursors.items():
            count: ColumnElement[int] = func.count()
            if cursor is not None:
                count = func.count().filter(tuple_(changed, key) > tuple_(cursor.changed_at, cursor.key))
            counts.append(count.label(f"behind_{name}"))
        stmt = select(
            select(head.c[self.changed_column]).scalar_subquery().label("head_changed"),
            select(head.c[self.key]).scalar_subquery().label("head_key"),
            *counts,
        ).select_from(src)
        known = [c for c in cursors.values() if c is not None]
        if known and len(known) == len(cursors):
            low = min(known)
            stmt = stmt.where(tuple_(changed, key) > tuple_(low.changed_at, low.key))
        return stmt

    def by_keys_statement(self, keys: list[Any]) -> Select[Any]:
        """The current rows of the given keys (fresh data for replays and repairs)."""
        src = self._subquery()
        return select(*(src.c[f] for f in self._fields)).where(src.c[self.key].in_(keys))

    def existing_keys_statement(self, keys: list[Any]) -> Select[Any]:
        src = self._subquery()
        return select(src.c[self.key]).where(src.c[self.key].in_(keys))

    def key_from_id(self, doc_id: str) -> Any:
        """A document id back to the key's own type (ids are strings in OpenSearch)."""
        try:
            python_type = self.selectable.selected_columns[self.key].type.python_type
        except NotImplementedError:
            return doc_id
        return int(doc_id) if python_type is int else doc_id

    def count_statement(self) -> Select[int]:
        return select(func.count()).select_from(self._subquery())

    def record_to_json(self, record: R) -> Mapping[str, Any]:
        """A record as a plain mapping, for dead-letter payloads."""
        return {f: getattr(record, f) for f in self._fields}
