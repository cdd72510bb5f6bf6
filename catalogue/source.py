"""The demo catalogue as one instance of a generic :class:`etl_core.Source`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from etl_core import Source
from etl_core.capture.triggers import Hop, Tracked, Tracking

metadata = MetaData()
"""The demo's tables, complete: ``create_schema`` creates them from here (one declaration for the
DDL and for the queries)."""


def _stamp(name: str) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


brands = Table(
    "brands",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("country", Text),
    _stamp("updated_at"),
)
categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("parent_id", Integer, ForeignKey("categories.id")),
    _stamp("updated_at"),
)
products = Table(
    "products",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("sku", Text, nullable=False, unique=True),
    Column("name", Text),
    Column("description", Text),
    Column("brand_id", Integer, ForeignKey("brands.id")),
    Column("price_cents", Integer),
    Column("currency", Text, nullable=False, server_default="EUR"),
    Column("stock", Integer, nullable=False, server_default="0"),
    _stamp("created_at"),
    _stamp("updated_at"),
    Column("deleted_at", DateTime(timezone=True)),
    Index("products_change_order", "updated_at", "id"),
)
product_categories = Table(
    "product_categories",
    metadata,
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", Integer, ForeignKey("categories.id"), primary_key=True),
    Index("product_categories_category", "category_id"),
)


@dataclass(frozen=True, slots=True)
class Product:
    """One catalogue row: a product with its brand and categories joined in."""

    id: int
    sku: str
    name: str | None
    description: str | None
    price_cents: int | None
    currency: str
    stock: int
    brand: str | None
    brand_country: str | None
    categories: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


# A product's categories, sorted by name: [{"id": ..., "name": ...}, ...] (or []).
# Every category as its {"id", "name"} object, keyed by id: one small jsonb object that PostgreSQL
# builds once per statement (an InitPlan: the query does not depend on the product), where a join
# to `categories` inside the per-product subquery was planned as a hash of the whole table
# rebuilt for every product (7.7 of 8.7 µs per row; benchmarks/README.md, "The page query").
# Right for a small lookup table (the demo's taxonomy); a large one is joined by its index instead.
_category_by_id = select(
    func.jsonb_object_agg(
        categories.c.id,
        func.jsonb_build_object(
            literal_column("'id'"),
            categories.c.id,
            literal_column("'name'"),
            categories.c.name,
        ),
    )
).scalar_subquery()
_category = _category_by_id.op("->")(cast(product_categories.c.category_id, Text))
# Per product, only an index-only scan of the link table's primary key (product_id, category_id).
_categories = (
    select(
        func.coalesce(
            func.jsonb_agg(aggregate_order_by(_category, _category.op("->>")(literal_column("'name'")))),
            literal_column("'[]'::jsonb"),
        )
    )
    .where(product_categories.c.product_id == products.c.id)
    .scalar_subquery()
)

catalogue_select = select(
    products.c.id,
    products.c.sku,
    products.c.name,
    products.c.description,
    products.c.price_cents,
    products.c.currency,
    products.c.stock,
    brands.c.name.label("brand"),
    brands.c.country.label("brand_country"),
    _categories.label("categories"),
    products.c.created_at,
    products.c.updated_at,
    products.c.deleted_at,
).select_from(products.outerjoin(brands, brands.c.id == products.c.brand_id))

# Change capture for the same documents: which rows of which table change which products.
# A brand's rows reach products through products.brand_id; a category's through the link table;
# a link row names its product itself. The DDL it generates:
# `python -m etl_core --source catalogue.source:CATALOGUE tracking plan` (deploy/catalogue-tracking.sql).
TRACKING = Tracking(
    "catalogue",
    products,
    "id",
    (
        Tracked(brands, "id", (Hop(products, "brand_id", "id"),)),
        Tracked(categories, "id", (Hop(product_categories, "category_id", "product_id"),)),
        Tracked(product_categories, "product_id"),
    ),
)

CATALOGUE = Source(
    name="catalogue",
    selectable=catalogue_select,
    record_type=Product,
    key="id",
    deleted="deleted_at",
    tracking=TRACKING,
    alias="products",  # what the storefront queries
)

# The same documents ordered by a change column instead, for a table that already carries a
# trustworthy one (stamped on every change, parents included). The demo's updated_at is not
# maintained by anything, so only tests that install such a stamp use this.
CATALOGUE_BY_COLUMN = Source(
    name="catalogue",
    selectable=catalogue_select,
    record_type=Product,
    key="id",
    changed="updated_at",
    deleted="deleted_at",
)
