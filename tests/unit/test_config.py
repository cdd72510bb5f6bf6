"""Bad configuration fails at load, naming the field and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select

from etl_core import ConfigError, IndexVersion, Source, validate_versions
from etl_core.settings import Declared, Settings
from orchestration.resources import SyncServices
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
    with pytest.raises(ConfigError, match="ETL_PAGE_SIZE='many' must be a whole number"):
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
    assert "s3cret" not in repr(Declared.read({"SOURCE_DATABASE_URL": "postgresql://u:s3cret@h/db"}))
    # libpq also takes the password as a query parameter: never shown either
    in_query = Settings.from_env(
        {"OPENSEARCH_URL": "http://h:9200", "SOURCE_DATABASE_URL": "postgresql://u@h/db?password=q-s3cret"}
    )
    assert "q-s3cret" not in repr(in_query)


def test_writes_in_flight_are_a_whole_number_of_at_least_one() -> None:
    env = {"OPENSEARCH_URL": "http://localhost:9200", "SOURCE_DATABASE_URL": "postgresql://u:p@h/db"}
    assert Settings.from_env(env).bulk_in_flight == 2
    assert Settings.from_env({**env, "ETL_BULK_IN_FLIGHT": "1"}).bulk_in_flight == 1
    with pytest.raises(ConfigError, match="ETL_BULK_IN_FLIGHT='0' must be at least 1"):
        Settings.from_env({**env, "ETL_BULK_IN_FLIGHT": "0"})


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        # anything but "false" used to verify; now only true/false (and 1/0, yes/no, on/off)
        ("OPENSEARCH_VERIFY_CERTS", "maybe", "OPENSEARCH_VERIFY_CERTS='maybe' must be true or false"),
        ("ETL_AUTOMATION", "sometimes", "ETL_AUTOMATION='sometimes' must be true or false"),
        # was created, and made the next sync walk every row again into the live indices
        (
            "ETL_STATE_SCHEMA",
            "no such; schema",
            "ETL_STATE_SCHEMA='no such; schema' must be a lower-case SQL",
        ),
        ("ETL_STATE_SCHEMA", "Etl_State", "must be a lower-case SQL identifier"),
        ("ETL_FOLLOW_POLL_S", "soon", "ETL_FOLLOW_POLL_S='soon' must be a number"),
        ("ETL_FOLLOW_POLL_S", "0", "ETL_FOLLOW_POLL_S='0' must be more than 0"),
        ("ETL_SCHEDULE_CRON", "every minute", "ETL_SCHEDULE_CRON='every minute' must be a cron expression"),
        ("ETL_MAX_LAG_ROWS", "-1", "ETL_MAX_LAG_ROWS='-1' must be at least 0"),
        ("ETL_FRESHNESS_WARN_S", "30", "ETL_FRESHNESS_WARN_S='30' must be at least 60"),
        (
            "ETL_FRESHNESS_FAIL_S",
            "120",
            "ETL_FRESHNESS_FAIL_S='120' must be more than ETL_FRESHNESS_WARN_S (300)",
        ),
    ],
)
def test_a_wrong_value_is_refused_naming_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        Declared.read({variable: value})


def test_a_wrong_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="SOURCE_DATABASE_URL is not a database URL") as raised:
        Settings.from_env({"OPENSEARCH_URL": "http://h:9200", "SOURCE_DATABASE_URL": "hunter2-not-a-url"})
    assert "hunter2" not in str(raised.value)


def test_seconds_may_have_a_fraction_and_booleans_follow_one_rule() -> None:
    env = Declared.read(
        {"ETL_FOLLOW_POLL_S": "0.5", "ETL_MAX_LAG_S": "2.5", "ETL_AUTOMATION": "off", "ETL_FOLLOW_S": "1.5"}
    )
    assert (env.etl_follow_poll_s, env.etl_max_lag_s, env.etl_follow_s) == (0.5, 2.5, 1.5)
    assert env.etl_automation is False
    assert Declared.read({"OPENSEARCH_VERIFY_CERTS": "0"}).opensearch_verify_certs is False
    assert Declared.read({"OPENSEARCH_VERIFY_CERTS": "TRUE"}).opensearch_verify_certs is True


def test_the_dagster_resource_carries_exactly_the_run_time_settings() -> None:
    """ETL_BULK_IN_FLIGHT was read by the command line and silently ignored under Dagster: the
    resource's fields are the declaration's run-time fields, no more and no fewer."""
    assert set(SyncServices.model_fields) == set(Declared.RESOURCE_FIELDS)
    assert set(Declared.RESOURCE_FIELDS) <= set(Declared.model_fields)
    engine = SyncServices(
        source_database_url="postgresql://u@h/db", opensearch_url="http://h:9200", etl_bulk_in_flight="3"
    )
    assert engine.settings().bulk_in_flight == 3
