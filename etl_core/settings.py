"""Every setting of the project, declared once: :class:`Declared` (pydantic-settings).

Each field is one environment variable (the field's name in capitals), typed, with its default
and why it exists. Everything else derives from this one declaration: :class:`Settings` (the
connections and tuning of one sync), the command line's :class:`CloseEnough` and
:class:`Thresholds`, ``build_definitions``' schedule and automation defaults, and the Dagster
resource's ``EnvVar`` fields (``orchestration.resources``). A wrong value is refused when it is
read, naming the variable and what it should be; a secret's value is never shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from psycopg.types.json import set_json_loads
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from etl_core.errors import ConfigError

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_URL_HELP = "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (scripts/services.sh env prints the local one)"


def _cron(value: str) -> str:
    if len(value.split()) != 5:
        raise ValueError("must be a cron expression of five fields, e.g. '*/5 * * * *'")
    return value


class Declared(BaseSettings):
    """The environment, typed. Field ``etl_page_size`` is the variable ``ETL_PAGE_SIZE``."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True, validate_default=True
    )

    # --- where the services are (the Dagster resource's fields: RESOURCE_FIELDS) ---
    source_database_url: SecretStr | None = Field(
        default=None, description="The source database. " + _URL_HELP
    )
    state_database_url: SecretStr | None = Field(
        default=None,
        description="Where cursors, dead letters and validations live; default: the source database.",
    )
    tracking_database_url: SecretStr | None = Field(
        default=None,
        description="A role that may create triggers on the tracked tables (tracking apply); the "
        "sync role needs only SELECT. Default: the source URL.",
    )
    opensearch_url: str | None = Field(default=None, description="http(s)://HOST:PORT, without a password.")
    opensearch_user: str | None = None
    opensearch_password: SecretStr | None = None
    opensearch_ca_certs: str | None = Field(default=None, description="A CA bundle to verify the node with.")
    opensearch_verify_certs: bool = Field(
        default=True, description="true or false; false only for a test node."
    )
    etl_page_size: int = Field(default=1000, ge=1, description="Rows per page read from the source.")
    etl_bulk_max_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest _bulk request body."
    )
    etl_bulk_in_flight: int = Field(
        default=2,
        ge=1,
        description="Pages whose _bulk writes may be on their way at once: with 2 the next page is "
        "sent while the last one's answer is read (1.13 times the documents per second of 1, "
        "measured; 3 gained nothing more).",
    )
    etl_state_schema: str = Field(default="etl_state", description="The schema of the state tables.")
    etl_follow_poll_s: float = Field(
        default=30.0,
        gt=0,
        description="How often an idle follower polls the change log anyway: a safety net with "
        "notifications, the only wake-up for tracking declared with notify=False.",
    )

    # --- how versions are named and planned (command line and build_definitions) ---
    etl_index_prefix: str = Field(
        default="",
        description="Goes before every index name and the read alias (one cluster, many projects).",
    )
    etl_close_enough_s: float = Field(
        default=300.0,
        ge=0,
        description="How far behind the head (seconds) a version may be and share the live lane.",
    )
    etl_close_enough_rows: int = Field(default=10_000, ge=0, description="The same, in rows.")
    etl_catch_up_pages: int = Field(default=200, ge=1, description="Page budget of one catch-up run.")
    etl_backfill_shards: int = Field(
        default=0,
        ge=0,
        description="At 2 or more a never-synced version is built in that many key ranges at once.",
    )
    etl_follow_s: float = Field(
        default=0.0,
        ge=0,
        description="Each scheduled live-lane run follows the source this long; 0 syncs once.",
    )
    etl_schedule_cron: str = Field(default="* * * * *", description="The freshness schedule.")
    etl_reconcile_cron: str = Field(default="0 3 * * *", description="The nightly reconcile.")
    etl_observe_cron: str = Field(default="*/5 * * * *", description="When the source is observed.")
    etl_owners: str = Field(
        default="",
        description="Owners of every asset, comma-separated: team:search, someone@example.com.",
    )
    etl_automation: bool = Field(
        default=True, description="false starts the sensor and schedules stopped (switch them on in the UI)."
    )

    # --- validation thresholds (the cut-over gate) and the change log's upkeep ---
    etl_max_dead_letters: int = Field(default=0, ge=0, description="Open dead letters a version may have.")
    etl_max_lag_rows: int = Field(default=0, ge=0, description="Rows a version may be behind and pass.")
    etl_max_lag_s: float = Field(default=300.0, ge=0, description="Seconds a version may be behind and pass.")
    etl_max_log_mb: int = Field(default=1024, ge=1, description="Change-log size that warns.")
    etl_max_log_age_s: float = Field(
        default=86_400.0, gt=0, description="Oldest unread log entry's age that warns."
    )

    # --- freshness of the index assets (the catalogue's yellow and red) ---
    etl_freshness_warn_s: float = Field(
        default=300.0,
        ge=60,  # Dagster refuses a freshness window under a minute
        description="Age of the oldest committed change a counted version has not applied that "
        "turns its index asset yellow (warn); at least 60.",
    )
    etl_freshness_fail_s: float = Field(
        default=1800.0, ge=60, description="The same age that turns it red (fail); above the warning."
    )

    RESOURCE_FIELDS: ClassVar[tuple[str, ...]] = (
        "source_database_url",
        "opensearch_url",
        "state_database_url",
        "tracking_database_url",
        "opensearch_user",
        "opensearch_password",
        "opensearch_ca_certs",
        "opensearch_verify_certs",
        "etl_page_size",
        "etl_bulk_max_bytes",
        "etl_bulk_in_flight",
        "etl_state_schema",
        "etl_follow_poll_s",
    )
    """What a sync needs at run time, so what the Dagster resource carries as ``EnvVar``."""

    @field_validator("etl_state_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _), e.g. etl_state")
        return value

    @field_validator("etl_freshness_fail_s")
    @classmethod
    def _fail_after_warn(cls, value: float, info: ValidationInfo) -> float:
        warn = info.data.get("etl_freshness_warn_s")
        if warn is not None and value <= warn:
            raise ValueError(
                f"must be more than ETL_FRESHNESS_WARN_S ({warn:g}): "
                "an index turns yellow before it turns red"
            )
        return value

    @field_validator("etl_schedule_cron", "etl_reconcile_cron", "etl_observe_cron")
    @classmethod
    def _crons(cls, value: str) -> str:
        return _cron(value)

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> Declared:
        """The process environment, or exactly ``env`` (tests, a resource's resolved fields)."""
        try:
            if env is None:
                return cls()
            return _Only.model_validate({k.lower(): v for k, v in env.items() if v != ""})
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    @classmethod
    def set_in_environment(cls, names: tuple[str, ...]) -> list[str]:
        """Which of these fields the process environment sets (the resource passes only those)."""
        return [n for n in names if os.environ.get(n.upper())]

    # --- what derives from the declaration ---

    def url(self, name: str, fallback: str | None = None) -> URL:
        value = getattr(self, name) or (getattr(self, fallback) if fallback else None)
        variable = name.upper()
        if value is None:
            raise ConfigError(f"{variable} is not set: export {variable}={_URL_HELP}")
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ConfigError(
                f"{variable} is not a database URL; expected postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
            ) from None
        if url.get_backend_name() != "postgresql":
            raise ConfigError(f"{variable} must point at PostgreSQL (postgresql+psycopg://...)")
        return url.set(drivername="postgresql+psycopg")

    def owners(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.etl_owners.split(",") if o.strip())

    def tracking_url(self) -> URL:
        """The role ``tracking apply|remove|status`` uses: TRACKING_DATABASE_URL, else the source's."""
        return self.url("tracking_database_url", fallback="source_database_url")

    def services(self) -> Settings:
        os_url = self.opensearch_url or ""
        if not os_url:
            raise ConfigError("OPENSEARCH_URL is not set: export OPENSEARCH_URL=http://HOST:9200")
        parts = urlsplit(os_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OPENSEARCH_URL must look like http(s)://HOST:PORT, got {parts.scheme}://…")
        if parts.password:
            raise ConfigError("OPENSEARCH_URL must not carry a password: set OPENSEARCH_PASSWORD instead")
        password = self.opensearch_password
        return Settings(
            source_url=self.url("source_database_url"),
            state_url=self.url("state_database_url", fallback="source_database_url"),
            opensearch_url=os_url,
            opensearch_user=self.opensearch_user,
            opensearch_password=password.get_secret_value() if password else None,
            opensearch_ca_certs=self.opensearch_ca_certs,
            opensearch_verify_certs=self.opensearch_verify_certs,
            page_size=self.etl_page_size,
            bulk_max_bytes=self.etl_bulk_max_bytes,
            bulk_in_flight=self.etl_bulk_in_flight,
            state_schema=self.etl_state_schema,
            tracking_url=self.url("tracking_database_url") if self.tracking_database_url else None,
            follow_poll_s=self.etl_follow_poll_s,
            state_variable="STATE_DATABASE_URL" if self.state_database_url else "SOURCE_DATABASE_URL",
        )


class _Only(Declared):
    """The declaration reading nothing but what it is given."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _explain(exc: ValidationError) -> str:
    """One line per wrong variable: its name, what was given (unless secret) and what it should be."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        info = Declared.model_fields.get(name)
        secret = info is not None and "SecretStr" in str(info.annotation)
        given = "" if secret else f"={error.get('input')!r}"
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        if "ge" in ctx:
            bound = f"at least {ctx['ge']:g}"
        elif "gt" in ctx:
            bound = f"more than {ctx['gt']:g}"
        else:
            bound = ""
        what = {
            "int_parsing": "must be a whole number",
            "float_parsing": "must be a number (seconds may have a fraction)",
            "bool_parsing": "must be true or false",
            "greater_than_equal": f"must be {bound}",
            "greater_than": f"must be {bound}",
        }.get(error["type"], str(ctx.get("error") or error["msg"]).removeprefix("Value error, "))
        lines.append(f"{name.upper()}{given} {what}")
    return "; ".join(lines)


@dataclass(frozen=True)
class Settings:
    """The connections and tuning of one sync, as values (URLs parsed, secrets in clear only
    here, never in ``repr``). Built from :class:`Declared`; tests replace fields freely."""

    source_url: URL
    state_url: URL
    opensearch_url: str
    opensearch_user: str | None = None
    opensearch_password: str | None = field(default=None, repr=False)
    opensearch_ca_certs: str | None = None
    opensearch_verify_certs: bool = True
    page_size: int = 1000
    bulk_max_bytes: int = 5 * 1024 * 1024
    bulk_in_flight: int = 2
    state_schema: str = "etl_state"
    follow_poll_s: float = 30.0
    tracking_url: URL | None = None
    state_variable: str = "STATE_DATABASE_URL"
    """Where ``state_url`` came from (``SOURCE_DATABASE_URL`` when the state lives beside the
    source, the default), so that an error names the setting to fix."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return Declared.read(env).services()

    def __repr__(self) -> str:
        return (
            f"Settings(source={_shown(self.source_url)}, state={_shown(self.state_url)}, "
            f"opensearch={self.opensearch_url}, page_size={self.page_size})"
        )


def _shown(url: URL) -> str:
    """A URL as it may be shown: no password, and no query (libpq takes ``?password=`` too)."""
    return url.set(query={}).render_as_string(hide_password=True)


def make_engine(url: URL, **kwargs: object) -> Engine:
    """``hide_parameters`` keeps row values (and anything secret in them) out of error messages.

    ``json``/``jsonb`` columns are parsed with orjson: psycopg's default, the standard library's
    ``json``, was the largest Python cost of extraction in the profile (benchmarks/README.md).

    JIT compilation is switched off for these sessions. A page statement reads a thousand rows by
    key, but the planner cannot know how many log entries a page holds, so on a large table its
    estimate passed ``jit_above_cost`` and PostgreSQL compiled every page: 380 ms of JIT for 25 ms
    of work, per page, at a million rows (benchmarks/README.md). Nothing here is a long
    analytical query that JIT pays off for. (Behind a transaction-mode pooler a session ``SET``
    may not stick; set ``jit = off`` for the sync role there: ``ALTER ROLE … SET jit = off``.)
    """
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)

    @event.listens_for(engine, "connect")
    def _session(dbapi_connection: Any, _record: Any) -> None:
        set_json_loads(orjson.loads, dbapi_connection)
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # the SET outlives no transaction, and starts none
        try:
            dbapi_connection.execute("SET jit = off")
        finally:
            dbapi_connection.autocommit = autocommit

    return engine
