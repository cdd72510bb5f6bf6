"""Structured logs: one event a line, ``event key=value ...``; never pass secrets in."""

from __future__ import annotations

import logging
from typing import Any

import orjson

logger = logging.getLogger("etl_core")


def _fmt(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value and "=" not in value:
        return value
    return orjson.dumps(value, default=str).decode()


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", name, " ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))
