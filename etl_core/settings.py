"""Connection settings from the environment. Secrets never leave this object in clear text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from etl_core.errors import ConfigError


def url_from_env(env: Mapping[str, str], name: str, fallback: str | None = None) -> URL:
    raw = env.get(name) or (env.get(fallback) if fallback else None)
    if not raw:
        raise ConfigError(
            f"{name} is not set: export {name}=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB "
            "(scripts/services.sh env prints the local one)"
        )
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{name} is not a database URL; expected postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"{name} must point at PostgreSQL (postgresql+psycopg://...)")
    return url.set(drivername="postgresql+psycopg")


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """One integer setting; every surface (settings, ``build_definitions``, the command line)
    parses them here, so a bad value reads the same everywhere."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number (at least {minimum})") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be a whole number of at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
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
    """Pages whose ``_bulk`` writes may be on their way at once (``ETL_BULK_IN_FLIGHT``): with 2
    the next page is sent while the last one's answer is read and its cursor committed (1.13 times
    the documents per second of 1, measured; 3 gained nothing more). 1 sends one at a time."""
    state_schema: str = "etl_state"
    follow_poll_s: float = 30.0
    """How often an idle follower polls the change log anyway (``ETL_FOLLOW_POLL_S``): a safety
    net with notifications, the only wake-up for tracking declared with ``notify=False``."""
    tracking_url: URL | None = None
    """A role that may create triggers on the tracked tables (``TRACKING_DATABASE_URL``); the
    sync role needs only SELECT. None: the source URL."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        os_url = env.get("OPENSEARCH_URL") or ""
        if not os_url:
            raise ConfigError("OPENSEARCH_URL is not set: export OPENSEARCH_URL=http://HOST:9200")
        parts = urlsplit(os_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OPENSEARCH_URL must look like http(s)://HOST:PORT, got {parts.scheme}://…")
        if parts.password:
            raise ConfigError("OPENSEARCH_URL must not carry a password: set OPENSEARCH_PASSWORD instead")
        schema = env.get("ETL_STATE_SCHEMA", "etl_state")
        return cls(
            source_url=url_from_env(env, "SOURCE_DATABASE_URL"),
            state_url=url_from_env(env, "STATE_DATABASE_URL", fallback="SOURCE_DATABASE_URL"),
            opensearch_url=os_url,
            opensearch_user=env.get("OPENSEARCH_USER") or None,
            opensearch_password=env.get("OPENSEARCH_PASSWORD") or None,
            opensearch_ca_certs=env.get("OPENSEARCH_CA_CERTS") or None,
            opensearch_verify_certs=env.get("OPENSEARCH_VERIFY_CERTS", "true").lower() != "false",
            page_size=env_int(env, "ETL_PAGE_SIZE", 1000),
            bulk_max_bytes=env_int(env, "ETL_BULK_MAX_BYTES", 5 * 1024 * 1024),
            bulk_in_flight=env_int(env, "ETL_BULK_IN_FLIGHT", 2),
            state_schema=schema,
            tracking_url=url_from_env(env, "TRACKING_DATABASE_URL")
            if env.get("TRACKING_DATABASE_URL")
            else None,
            follow_poll_s=float(env_int(env, "ETL_FOLLOW_POLL_S", 30)),
        )

    def __repr__(self) -> str:
        return (
            f"Settings(source={self.source_url.render_as_string(hide_password=True)}, "
            f"state={self.state_url.render_as_string(hide_password=True)}, "
            f"opensearch={self.opensearch_url}, page_size={self.page_size})"
        )


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
