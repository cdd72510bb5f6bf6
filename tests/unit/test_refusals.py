"""Which connection failures are retried and which fail at once: a server starting, shutting down
or full is an outage (retried); a wrong password, a missing database or user, pg_hba.conf or a
missing CONNECT grant is not, and the error names the variable and the fix."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from etl_core.retry import refused_connection, transient_db_error


def failure(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(message))


@pytest.mark.parametrize(
    "server",
    [
        "FATAL:  the database system is starting up",
        "FATAL:  the database system is shutting down",
        "FATAL:  the database system is in recovery mode",
        "FATAL:  sorry, too many clients already",
        "Is the server running on that host and accepting TCP/IP connections?",
    ],
)
def test_an_outage_is_retried(server: str) -> None:
    error = failure(f'connection to server at "127.0.0.1", port 5432 failed: {server}')
    assert transient_db_error(error) and refused_connection(error, "SOURCE_DATABASE_URL") is None


@pytest.mark.parametrize(
    ("server", "fix"),
    [
        (
            'password authentication failed for user "etl"',
            "Check the user and password in STATE_DATABASE_URL",
        ),
        ('database "shop" does not exist', "Check the database name in STATE_DATABASE_URL, or create"),
        ('role "bob" does not exist', "Check the user in STATE_DATABASE_URL"),
        (
            'permission denied for database "shop"',
            "GRANT CONNECT ON DATABASE to the user of STATE_DATABASE_URL",
        ),
        ('no pg_hba.conf entry for host "10.0.0.9", user "etl", database "shop"', "pg_hba.conf does not let"),
        ('pg_hba.conf rejects connection for host "10.0.0.9", user "etl"', "pg_hba.conf does not let"),
        ('role "etl" is not permitted to log in', "may not log in"),
        ('certificate authentication failed for user "etl"', "the credentials (certificate, ident)"),
    ],
)
def test_a_refusal_fails_at_once_naming_the_variable_and_the_fix(server: str, fix: str) -> None:
    error = failure(f'connection to server at "db.internal" (10.0.0.1), port 5432 failed: FATAL:  {server}\n')
    refused = refused_connection(error, "STATE_DATABASE_URL")
    assert not transient_db_error(error) and refused is not None
    assert str(refused).startswith(f"PostgreSQL refused the connection of STATE_DATABASE_URL: {server}. ")
    assert fix in str(refused) and "db.internal" not in str(refused)  # the server's line, not the URL
