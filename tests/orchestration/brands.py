"""A second source over the demo database, for tests of several sources in one code location:
the brands themselves, with a version key (``v1``) the catalogue uses too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from catalogue.source import brands
from etl_core import IndexVersion, Source, Tracking


@dataclass(frozen=True, slots=True)
class Brand:
    id: int
    name: str
    country: str | None


def brand_document(b: Brand) -> dict[str, Any]:
    return {"name": b.name, "country": b.country}


BRANDS = Source(
    name="brands",
    selectable=select(brands.c.id, brands.c.name, brands.c.country),
    record_type=Brand,
    key="id",
    tracking=Tracking("brands", brands, "id"),
)

B1: IndexVersion[Brand] = IndexVersion(
    key="v1",
    index="brands_v1",
    transform=brand_document,
    mappings={"properties": {"name": {"type": "keyword"}, "country": {"type": "keyword"}}},
)
