"""The follower's LISTEN connection under a server restart: "starting up" is waited for with the
one retry policy (a follow run survives a short restart), a refusal fails at once naming it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from etl_core.errors import ConfigError, SourceUnavailable
from etl_core.flow import follow
from etl_core.retry import Backoff

URL = make_url("postgresql+psycopg://etl:pw@db.internal:5432/shop")
FAST = Backoff(attempts=4, initial=0.001, maximum=0.002)


class Conn:
    autocommit = False

    def __init__(self) -> None:
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


def connecting(monkeypatch: pytest.MonkeyPatch, *answers: str | None) -> list[str]:
    """``psycopg.connect`` failing with each server line in turn (None: it connects)."""
    calls: list[str] = []
    queue = list(answers)

    def connect(conninfo: str, **_: Any) -> Conn:
        calls.append(conninfo)
        answer = queue.pop(0)
        if answer is not None:
            raise psycopg.OperationalError(f'connection to server at "db.internal" failed: FATAL:  {answer}')
        return Conn()

    monkeypatch.setattr(psycopg, "connect", connect)  # as the follower calls it
    return calls


def test_a_server_starting_up_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = connecting(
        monkeypatch, "the database system is starting up", "the database system is starting up", None
    )
    listener = follow.Listener(URL, "etl_catalogue", FAST)
    assert len(calls) == 3 and listener.conn.executed == ['LISTEN "etl_catalogue"']  # type: ignore[attr-defined]


def test_a_server_down_past_the_budget_fails_as_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    connecting(monkeypatch, *["the database system is shutting down"] * 4)
    with pytest.raises(SourceUnavailable, match="could not LISTEN on 'etl_catalogue' after 4 attempts"):
        follow.Listener(URL, "etl_catalogue", FAST)


def test_a_refusal_fails_at_once_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = connecting(monkeypatch, 'password authentication failed for user "etl"')
    with pytest.raises(
        ConfigError, match="refused the connection of SOURCE_DATABASE_URL: password"
    ) as raised:
        follow.Listener(URL, "etl_catalogue", FAST)
    assert len(calls) == 1 and ":pw@" not in str(raised.value)
