"""Bad configuration fails at load, naming the field and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select

from etl_core import ConfigError, IndexVersion, Source, validate_versions
from etl_core.settings import Settings
from orchestration.resources import _OPTIONAL, SyncEngine
from tests.unit.models import SOURCE, Item, doc, items, version


def test_source_rejects_a_record_field_the_select_does_not_provide() -> None:
    @dataclass(frozen=True, slots=True)
    class Wider:
        id: int
        changed: datetime
        colour: str

    with pytest.raises(ConfigError, match=r"needs columns \['colour'\]"):
        Source("items", select(items), Wider, key="id", changed="changed")


def test_source_rejects_unknown_key_column_and_mutable_records() -> None:
    with pytest.raises(ConfigError, match="key column 'uid' is not selected"):
        Source("items", select(items), Item, key="uid", changed="changed")

    @dataclass
    class Mutable:
        id: int
        changed: datetime

    with pytest.raises(ConfigError, match="frozen and slotted"):
        Source("items", select(items), Mutable, key="id", changed="changed")


def test_duplicate_version_keys_and_indices_are_refused() -> None:
    with pytest.raises(ConfigError, match="'v1' is declared twice"):
        validate_versions([version("v1"), version("v1")])
    with pytest.raises(ConfigError, match="both write index 'items_v1'"):
        validate_versions([version("v1"), IndexVersion("v2", "items_v1", doc)])


def test_a_transform_needing_an_unselected_column_is_refused() -> None:
    needy = version("v1", needs=frozenset({"name", "colour"}))
    with pytest.raises(ConfigError, match=r"needs \['colour'\].*add them to the source"):
        validate_versions([needy], SOURCE.fields)


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="key 'V 1' is invalid"):
        version("V 1")
    with pytest.raises(ConfigError, match="index name 'Items' is invalid"):
        IndexVersion("v1", "Items", doc)


def test_settings_name_the_missing_variable_and_never_show_the_password() -> None:
    with pytest.raises(ConfigError, match="SOURCE_DATABASE_URL is not set"):
        Settings.from_env({"OPENSEARCH_URL": "http://localhost:9200"})
    with pytest.raises(ConfigError, match="OPENSEARCH_URL is not set"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="set OPENSEARCH_PASSWORD instead"):
        Settings.from_env({"OPENSEARCH_URL": "http://u:hunter2@localhost:9200"})
    with pytest.raises(ConfigError, match="ETL_PAGE_SIZE='many' is not a whole number"):
        Settings.from_env(
            {
                "OPENSEARCH_URL": "http://localhost:9200",
                "ETL_PAGE_SIZE": "many",
                "SOURCE_DATABASE_URL": "postgresql://u:s3cret@h/db",
            }
        )
    s = Settings.from_env(
        {
            "OPENSEARCH_URL": "http://localhost:9200",
            "SOURCE_DATABASE_URL": "postgresql://u:s3cret@h/db",
            "OPENSEARCH_PASSWORD": "os-s3cret",
            "OPENSEARCH_USER": "admin",
        }
    )
    assert s.state_url == s.source_url
    assert s.source_url.drivername == "postgresql+psycopg"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)


def test_writes_in_flight_are_a_whole_number_of_at_least_one() -> None:
    env = {"OPENSEARCH_URL": "http://localhost:9200", "SOURCE_DATABASE_URL": "postgresql://u:p@h/db"}
    assert Settings.from_env(env).bulk_in_flight == 2
    assert Settings.from_env({**env, "ETL_BULK_IN_FLIGHT": "1"}).bulk_in_flight == 1
    with pytest.raises(ConfigError, match="ETL_BULK_IN_FLIGHT='0' must be a whole number of at least 1"):
        Settings.from_env({**env, "ETL_BULK_IN_FLIGHT": "0"})


class Recording(dict[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def test_every_setting_the_core_reads_is_a_field_of_the_dagster_resource() -> None:
    """ETL_BULK_IN_FLIGHT was read by the command line and silently ignored under Dagster: the
    resource passes on exactly the variables ``Settings.from_env`` asks for."""
    env = Recording({"SOURCE_DATABASE_URL": "postgresql://u@h/db", "OPENSEARCH_URL": "http://h:9200"})
    Settings.from_env(env)
    passed = {"SOURCE_DATABASE_URL", "OPENSEARCH_URL", *_OPTIONAL}
    assert env.asked <= passed, sorted(env.asked - passed)
    assert all(
        hasattr(SyncEngine, name.lower()) or name.lower() in SyncEngine.model_fields for name in passed
    )
    engine = SyncEngine(
        source_database_url="postgresql://u@h/db", opensearch_url="http://h:9200", etl_bulk_in_flight="3"
    )
    assert engine.settings().bulk_in_flight == 3
