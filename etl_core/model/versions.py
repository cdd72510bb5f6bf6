"""Index versions: what one physical index holds, and how a record becomes its document."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from etl_core.errors import ConfigError
from etl_core.model.built import SqlExpression
from etl_core.model.probe import fields_read

R = TypeVar("R")
Document = Mapping[str, Any]

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_INDEX = re.compile(r"^[a-z0-9][a-z0-9_\-.]{0,200}$")

# Applied while a version is built from nothing: no refresh, no replicas, so the bulk load does
# not pay for searchability it does not need yet. Restored when the version has caught up.
BACKFILL_SETTINGS: Mapping[str, Any] = {"index": {"refresh_interval": "-1", "number_of_replicas": 0}}


class Lifecycle(StrEnum):
    BUILDING = "building"
    CATCHING_UP = "catching_up"
    READY = "ready"
    LIVE = "live"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class IndexVersion(Generic[R]):
    """One index version.

    ``transform`` must be pure (record → document): the same record always gives the same document,
    which is what makes replays idempotent and parity checks meaningful. ``predicate`` selects the
    records that belong; a record that stops matching is deleted from this version.
    """

    key: str
    index: str
    transform: Callable[[R], Document]
    mappings: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    predicate: Callable[[R], bool] | None = None
    retired: bool = False
    """Retired in code: never synced again (the retire job records the same in the state tables,
    with a grace period before the index is deleted)."""
    needs: frozenset[str] = frozenset()
    """Record fields the transform reads; checked against the source at load time."""
    document_sql: SqlExpression | None = None
    """The document built in PostgreSQL, opt-in (:mod:`etl_core.model.built`): a function of the
    source's columns returning a JSON expression (``func.json_build_object(...)``), added to the
    lane's page query; ``transform`` stays the definition that validation, reconcile and replay
    use, so it must build the same document. NULL for a row makes it a dead letter."""
    predicate_sql: SqlExpression | None = None
    """``predicate`` evaluated in PostgreSQL (a boolean expression of the source's columns); when
    set, syncs use it instead of ``predicate``, which must agree with it."""

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ConfigError(
                f"index version key {self.key!r} is invalid: use a short lowercase name such as 'v2'"
            )
        if not _INDEX.match(self.index):
            raise ConfigError(
                f"version {self.key!r}: index name {self.index!r} is invalid: OpenSearch index "
                'names are lowercase, without spaces or \\/*?"<>|,#'
            )
        if not callable(self.transform):
            raise ConfigError(f"version {self.key!r}: transform must be a function record → dict")
        for name in ("document_sql", "predicate_sql"):
            built = getattr(self, name)
            if built is not None and not callable(built):
                raise ConfigError(
                    f"version {self.key!r}: {name} must be a function of the source's columns "
                    "returning a SQLAlchemy expression (lambda c: func.json_build_object(...))"
                )
        if self.mappings and not isinstance(self.mappings.get("properties", {}), Mapping):
            raise ConfigError(f"version {self.key!r}: mappings.properties must be an object")

    @property
    def serving_settings(self) -> dict[str, Any]:
        """The settings readers get once the backfill is done (defaults: 1 s refresh, 0 replicas)."""
        index = dict(self.settings.get("index", {}))
        return {
            "refresh_interval": str(index.get("refresh_interval", "1s")),
            "number_of_replicas": int(index.get("number_of_replicas", 0)),
        }

    def wants(self, record: R) -> bool:
        return self.predicate is None or self.predicate(record)


def validate_versions(
    versions: Iterable[IndexVersion[Any]], source_fields: Iterable[str] | None = None
) -> dict[str, IndexVersion[Any]]:
    """Fail at load, before any write: duplicate keys or indices, or a transform needing a column
    the source does not select."""
    by_key: dict[str, IndexVersion[Any]] = {}
    by_index: dict[str, str] = {}
    available = set(source_fields) if source_fields is not None else None
    for v in versions:
        if v.key in by_key:
            raise ConfigError(f"index version key {v.key!r} is declared twice; keys must be unique")
        if v.index in by_index:
            raise ConfigError(
                f"versions {by_index[v.index]!r} and {v.key!r} both write index {v.index!r}; "
                "give each version its own physical index"
            )
        if available is not None and not v.needs <= available:
            raise ConfigError(
                f"version {v.key!r}: transform needs {sorted(v.needs - available)} which the "
                f"source does not select; add them to the source's select"
            )
        _check_reads(v, available)
        by_key[v.key] = v
        by_index[v.index] = v.key
    return by_key


def with_prefix(versions: Iterable[IndexVersion[R]], prefix: str) -> list[IndexVersion[R]]:
    """The versions with ``prefix`` before every physical index name (``ETL_INDEX_PREFIX``: a
    cluster shared by several environments or projects). The command line and
    ``build_definitions`` both apply it, so they write the same indices."""
    if prefix and not _INDEX.match(f"{prefix}x"):
        raise ConfigError(
            f"ETL_INDEX_PREFIX={prefix!r} cannot start an OpenSearch index name: use lowercase "
            "letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. 'staging-')"
        )
    return [replace(v, index=f"{prefix}{v.index}") for v in versions] if prefix else list(versions)


def _check_reads(v: IndexVersion[Any], available: set[str] | None) -> None:
    """What the transform and predicate read (:func:`etl_core.model.probe.fields_read`) must be fields
    the record has and, when ``needs`` is declared, fields it lists."""
    for what, fn in (("transform", v.transform), ("predicate", v.predicate)):
        reads = fields_read(fn) if fn is not None else None
        if reads is None:
            continue
        if available is not None and not reads <= available:
            raise ConfigError(
                f"version {v.key!r}: its {what} reads {sorted(reads - available)}, which the "
                "source's records do not have; add them to the record type and the source's "
                "select, or fix the name"
            )
        if v.needs and not reads <= v.needs:
            raise ConfigError(
                f"version {v.key!r}: its {what} reads {sorted(reads - v.needs)}, which `needs` "
                "does not list; add them to needs"
            )


def pick(versions: Sequence[IndexVersion[R]], wanted: Iterable[str]) -> list[IndexVersion[R]]:
    """The versions a command or a job names, in declaration order (all of them when it names
    none), or a ConfigError that lists the declared ones: the one rule every surface uses."""
    names = list(wanted)
    by_key = {v.key: v for v in versions}
    unknown = [k for k in names if k not in by_key]
    if unknown:
        raise ConfigError(f"versions {unknown} are not declared; declared are {sorted(by_key)}")
    return [v for v in versions if v.key in names] if names else list(versions)
