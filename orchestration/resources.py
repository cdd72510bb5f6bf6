"""The one resource the project needs: connection settings for PostgreSQL and OpenSearch.

Values come from the environment through ``EnvVar``, so the UI shows the variable's name, never its
value, and nothing secret is a literal in code.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource, EnvVar

from etl_core.connect import Connections
from etl_core.errors import ConfigError
from etl_core.settings import Settings

_OPTIONAL = (
    "STATE_DATABASE_URL",
    "OPENSEARCH_USER",
    "OPENSEARCH_PASSWORD",
    "OPENSEARCH_CA_CERTS",
    "OPENSEARCH_VERIFY_CERTS",
    "ETL_PAGE_SIZE",
    "ETL_BULK_MAX_BYTES",
    "ETL_BULK_IN_FLIGHT",
    "ETL_STATE_SCHEMA",
    "TRACKING_DATABASE_URL",
    "ETL_FOLLOW_POLL_S",
)


def _resolved(value: str) -> str:
    return (value.get_value() or "") if isinstance(value, EnvVar) else value


class SyncEngine(ConfigurableResource["SyncEngine"]):
    """Settings for :class:`etl_core.connect.Connections`; validated by ``Settings.from_env``."""

    source_database_url: str
    opensearch_url: str
    state_database_url: str = ""
    opensearch_user: str = ""
    opensearch_password: str = ""
    opensearch_ca_certs: str = ""
    opensearch_verify_certs: str = "true"
    etl_page_size: str = ""
    etl_bulk_max_bytes: str = ""
    etl_bulk_in_flight: str = ""
    etl_state_schema: str = ""
    tracking_database_url: str = ""
    etl_follow_poll_s: str = ""

    @classmethod
    def from_env(cls) -> "SyncEngine":
        """Required variables always as ``EnvVar``; optional ones only when they are set."""
        optional = {name.lower(): EnvVar(name) for name in _OPTIONAL if os.environ.get(name)}
        return cls(
            source_database_url=EnvVar("SOURCE_DATABASE_URL"),
            opensearch_url=EnvVar("OPENSEARCH_URL"),
            **optional,
        )

    def settings(self) -> Settings:
        """Inside a run Dagster has resolved every ``EnvVar``; outside one (a script, a test)
        the fields still hold them, so they are read from the environment here."""
        names = ("SOURCE_DATABASE_URL", "OPENSEARCH_URL", *_OPTIONAL)
        env = {name: _resolved(getattr(self, name.lower())) for name in names}
        return Settings.from_env({k: v for k, v in env.items() if v})

    @contextmanager
    def connect(self, scope: str) -> Iterator[Connections]:
        """Connections for the source named ``scope`` (its state tables are its own)."""
        conns = Connections(self.settings(), scope)
        try:
            yield conns
        finally:
            conns.close()


def engine_of(resources: Any, key: str) -> SyncEngine:
    """The :class:`SyncEngine` a source's definitions use, under the resource key they were built
    with (``build_definitions(resource_key=...)``: sources in different databases need their own)."""
    found = getattr(resources, key, None)
    if not isinstance(found, SyncEngine):
        raise ConfigError(
            f"resource {key!r} must be an orchestration.resources.SyncEngine, got "
            f"{type(found).__name__}; pass resources={{{key!r}: SyncEngine(...)}} to Definitions"
        )
    return found
