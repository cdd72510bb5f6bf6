"""``SyncedSource``: one source declared in a ``defs.yaml`` instead of Python.

The component names the :class:`~etl_core.Source` and its versions by module path and sets the
choices that belong to that source (schedule, follow window, shards, pool, owners, alias); it
imports them and calls :func:`orchestration.project.build_definitions`, so a source declared in
YAML is the very same Dagster project as one built in Python. Settings that hold for every source
(connections, index prefix, thresholds, close-enough) stay in the environment
(:class:`etl_core.settings.Declared`)::

    # orchestration/defs/orders/defs.yaml  (dg scaffold defs orchestration.component.SyncedSource orders)
    type: orchestration.component.SyncedSource
    attributes:
      source: myshop.search:ORDERS
      versions: myshop.search:ORDER_VERSIONS
      schedule: "*/5 * * * *"
      follow_s: 50
      shards: 8
      pool: shop_db
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Sequence
from typing import Annotated, Any

from dagster import (
    Component,
    ComponentLoadContext,
    Definitions,
    Model,
    Resolvable,
    Resolver,
    scaffold_with,
)
from dagster._utils.schedules import is_valid_cron_string
from dagster.components import Scaffolder, ScaffoldRequest
from pydantic import BaseModel, field_validator

from etl_core import ConfigError, IndexVersion, Source
from orchestration.project import build_definitions


class SourceConfigError(ConfigError):
    """A ``defs.yaml`` names something that does not import, or not the kind of object it should."""


def load_path(field: str, path: str) -> object:
    """``package.module:ATTR`` (or ``package.module.ATTR``) → the object it names."""
    module_name, colon, attr = path.partition(":")
    if not colon:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr or not attr.isidentifier():
        raise SourceConfigError(
            f"{field}: {path!r} must name an object as package.module:ATTR (e.g. myshop.search:ORDERS)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise SourceConfigError(
                f"{field}: cannot import module {module_name!r} of {path!r} (no module named "
                f"{exc.name!r}): fix the path, or install the package that holds it"
            ) from None
        raise  # the module exists and one of its own imports fails: its traceback says which
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SourceConfigError(
            f"{field}: module {module_name!r} has no attribute {attr!r} (from {path!r}): fix the name"
        ) from None


def load_source(path: str) -> Source[Any]:
    found = load_path("source", path)
    if not isinstance(found, Source):
        raise SourceConfigError(
            f"source: {path!r} is a {type(found).__name__}, not an etl_core.Source: name the Source"
        )
    return found


def load_versions(path: str) -> list[IndexVersion[Any]]:
    found = load_path("versions", path)
    versions = list(found) if isinstance(found, Sequence) and not isinstance(found, str) else []
    if not versions or not all(isinstance(v, IndexVersion) for v in versions):
        raise SourceConfigError(
            f"versions: {path!r} is a {type(found).__name__}, not a non-empty sequence of "
            "etl_core.IndexVersion: name the list of versions"
        )
    return versions


class SyncedSourceParams(BaseModel):
    """What ``dg scaffold defs orchestration.component.SyncedSource PATH`` may be told."""

    source: str | None = None
    versions: str | None = None


class SyncedSourceScaffolder(Scaffolder[SyncedSourceParams]):
    """Writes a ``defs.yaml`` that loads as soon as its two paths name real objects, with every
    optional setting shown, commented out, at its default."""

    @classmethod
    def get_scaffold_params(cls) -> type[SyncedSourceParams]:
        return SyncedSourceParams

    def scaffold(self, request: ScaffoldRequest[SyncedSourceParams]) -> None:
        source = request.params.source or "package.module:SOURCE"
        versions = request.params.versions or "package.module:VERSIONS"
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            textwrap.dedent(
                f"""\
                type: {request.type_name}
                attributes:
                  source: {source}
                  versions: {versions}
                  # Optional, per source (unset: the environment's ETL_* setting):
                  # schedule: "* * * * *"   # freshness schedule (ETL_SCHEDULE_CRON)
                  # follow_s: 0             # follow window of each scheduled run (ETL_FOLLOW_S)
                  # shards: 0               # sharded backfill of new versions (ETL_BACKFILL_SHARDS)
                  # pool: <source>_sync     # the Dagster pool its runs hold
                  # catch_up_pages: 200     # page budget of one catch-up run (ETL_CATCH_UP_PAGES)
                  # automation: true        # sensor and schedules start running (ETL_AUTOMATION)
                  # read_alias: <source>    # the alias readers query (Source.alias)
                  # owners: [team:search]   # owners of its assets (ETL_OWNERS)
                """
            ),
            encoding="utf-8",
        )


def _about(description: str, example: object) -> Resolver:
    """A field's description and example in the ``defs.yaml`` schema (``dg utils
    inspect-component``, editors' completion)."""
    resolver: Resolver = Resolver.default(description=description, examples=[example])
    return resolver


@scaffold_with(SyncedSourceScaffolder)
class SyncedSource(Component, Model, Resolvable):
    """One PostgreSQL source and its OpenSearch index versions, kept in sync: the index asset
    (a partition per version), the observed source, the sync, migration and backfill jobs, the
    migration-planner sensor and the schedules, every one named after the source."""

    source: Annotated[
        str,
        _about(
            "The etl_core.Source, by module path: package.module:ATTR (or package.module.ATTR).",
            "myshop.search:ORDERS",
        ),
    ]
    versions: Annotated[
        str,
        _about(
            "The sequence of etl_core.IndexVersion of that source, by module path: package.module:ATTR.",
            "myshop.search:ORDER_VERSIONS",
        ),
    ]
    schedule: Annotated[
        str | None,
        _about(
            "Cron of the freshness schedule that keeps the live lane in step "
            "(default ETL_SCHEDULE_CRON, every minute).",
            "*/5 * * * *",
        ),
    ] = None
    follow_s: Annotated[
        float | None,
        _about(
            "Follow window in seconds: each scheduled live-lane run follows the source this long, "
            "woken by its NOTIFY (sources with change capture; default ETL_FOLLOW_S, 0: sync once "
            "per tick). Keep it shorter than the schedule's interval.",
            50,
        ),
    ] = None
    shards: Annotated[
        int | None,
        _about(
            "At 2 or more, the planner builds a never-synced version with the sharded backfill job "
            "in this many key ranges (default ETL_BACKFILL_SHARDS, 0: paged catch-up runs).",
            8,
        ),
    ] = None
    pool: Annotated[
        str | None,
        _about(
            "The Dagster pool the source's runs hold (default <source>_sync; dagster.yaml limits "
            "every pool to one run at a time). Sources that name the same pool never sync at once.",
            "shop_db",
        ),
    ] = None
    catch_up_pages: Annotated[
        int | None,
        _about("Page budget of one catch-up run (default ETL_CATCH_UP_PAGES, 200).", 200),
    ] = None
    automation: Annotated[
        bool | None,
        _about("false starts the source's sensor and schedules stopped (default ETL_AUTOMATION).", False),
    ] = None
    read_alias: Annotated[
        str | None,
        _about("The alias readers query, which the cut-over moves (default the Source's alias).", "orders"),
    ] = None
    owners: Annotated[
        list[str] | None,
        _about(
            "Owners of the source's assets: team:search, someone@example.com (default ETL_OWNERS).",
            ["team:search"],
        ),
    ] = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_cron_string(value):
            raise ValueError(f"{value!r} must be a cron expression of five fields, e.g. '*/5 * * * *'")
        return value

    @field_validator("follow_s", "shards")
    @classmethod
    def _not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"must be 0 or more, not {value}")
        return value

    @field_validator("catch_up_pages")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be 1 or more, not {value}")
        return value

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        try:
            source, versions = load_source(self.source), load_versions(self.versions)
        except SourceConfigError as exc:
            raise SourceConfigError(f"{context.path / 'defs.yaml'}: {exc}") from None
        return build_definitions(
            source,
            versions,
            cron=self.schedule,
            follow_s=self.follow_s,
            backfill_shards=self.shards,
            pool=self.pool,
            catch_up_pages=self.catch_up_pages,
            automation=self.automation,
            read_alias=self.read_alias,
            owners=self.owners,
        )
