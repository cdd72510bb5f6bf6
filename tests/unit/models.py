"""A tiny source and versions for unit tests: no database needed to build the statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, select

from etl_core import IndexVersion, Source

items = Table(
    "items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", Text),
    Column("qty", Integer),
    Column("changed", DateTime(timezone=True)),
    Column("gone", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    name: str | None
    qty: int
    changed: datetime
    gone: datetime | None


SOURCE: Source[Item] = Source("items", select(items), Item, key="id", changed="changed", deleted="gone")


def doc(item: Item) -> dict[str, Any]:
    if item.name is None:
        raise ValueError("name is required")
    return {"name": item.name, "qty": item.qty}


def version(key: str, **kw: Any) -> IndexVersion[Item]:
    return IndexVersion(key=key, index=f"items_{key}", transform=doc, **kw)
