"""The one resource the project needs: the services a source's runs use (PostgreSQL, OpenSearch).

Its fields mirror the one declaration of settings (``etl_core.settings.Declared``,
``RESOURCE_FIELDS``): one field per variable, filled with ``EnvVar`` so the UI shows the
variable's name, never its value, and nothing secret is a literal in code.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource, EnvVar

from etl_core.errors import ConfigError
from etl_core.operations.connect import Connections
from etl_core.settings import Declared, Settings


def _resolved(value: Any) -> str:
    return (value.get_value() or "") if isinstance(value, EnvVar) else str(value or "")


class SyncServices(ConfigurableResource["SyncServices"]):
    """The services of a source's runs: one ``str`` field per run-time setting
    (``Declared.RESOURCE_FIELDS``, same names in lower case), e.g.
    ``SyncServices(source_database_url=EnvVar("CRM_DATABASE_URL"), opensearch_url=EnvVar("OPENSEARCH_URL"))``.

    The fields are written out, not generated: Dagster shows a resource's fields in the UI and type
    checkers construct it from its annotations. ``test_config`` keeps them equal to the declaration.
    """

    source_database_url: str = ""
    opensearch_url: str = ""
    state_database_url: str = ""
    tracking_database_url: str = ""
    opensearch_user: str = ""
    opensearch_password: str = ""
    opensearch_ca_certs: str = ""
    opensearch_verify_certs: str = ""
    etl_page_size: str = ""
    etl_bulk_max_bytes: str = ""
    etl_bulk_in_flight: str = ""
    etl_state_schema: str = ""
    etl_follow_poll_s: str = ""

    @classmethod
    def from_env(cls) -> "SyncServices":
        """Every variable the environment sets, as ``EnvVar`` (the required ones always, so a
        missing one fails the run naming it)."""
        required = ("source_database_url", "opensearch_url")
        names = {*required, *Declared.set_in_environment(Declared.RESOURCE_FIELDS)}
        return cls(**{name: EnvVar(name.upper()) for name in names})

    def settings(self) -> Settings:
        """Inside a run Dagster has resolved every ``EnvVar``; outside one (a script, a test)
        the fields still hold them, so they are read from the environment here."""
        env = {name.upper(): _resolved(getattr(self, name)) for name in Declared.RESOURCE_FIELDS}
        return Declared.read(env).services()

    @contextmanager
    def connect(self, scope: str) -> Iterator[Connections]:
        """Connections for the source named ``scope`` (its state tables are its own)."""
        conns = Connections(self.settings(), scope)
        try:
            yield conns
        finally:
            conns.close()


def services_of(resources: Any, key: str) -> SyncServices:
    """The :class:`SyncServices` a source's definitions use, under the resource key they were
    built with (``build_definitions(resource_key=...)``: sources in different databases need
    their own)."""
    found = getattr(resources, key, None)
    if not isinstance(found, SyncServices):
        raise ConfigError(
            f"resource {key!r} must be an orchestration.resources.SyncServices, got "
            f"{type(found).__name__}; pass resources={{{key!r}: SyncServices(...)}} to Definitions"
        )
    return found
