"""Three index versions of the catalogue that show real schema evolution.

* ``v1`` flat: one document per product, categories as keywords, price in cents.
* ``v2`` reshaped: ``name`` renamed to ``title``, price split into ``{amount, currency}``, brand
  split into ``{name, country}``, categories nested, OpenSearch's ``english`` analyzer (stemming:
  "running shoes" finds "run shoe"; the ``analysis-common`` module), strict mapping, and a tighter
  ``stock`` type (``short``) — a product with more stock than that is a dead letter of v2 only.
* ``v3`` a predicate: only products in stock, as a compact document for a storefront, with a
  ``search_as_you_type`` title for its search box and the price as a ``scaled_float`` (both from
  the ``mapper-extras`` module).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Float, String, case, cast, func, literal, null
from sqlalchemy.dialects.postgresql import JSONPATH

from catalogue.source import Product
from etl_core import IndexVersion
from etl_core.model.built import isoformat


class MissingField(ValueError):
    """A required column is NULL: the row becomes a dead letter with this reason."""


def _required(product: Product, field: str) -> Any:
    value = getattr(product, field)
    if value is None:
        raise MissingField(f"{field} is NULL in product {product.id}; a document needs it")
    return value


def v1_document(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": _required(p, "name"),
        "description": p.description,
        "brand": p.brand,
        "price_cents": p.price_cents,
        "currency": p.currency,
        "stock": p.stock,
        "categories": [c["name"] for c in p.categories],
        "updated_at": p.updated_at.isoformat(),
    }


def v2_document(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "title": _required(p, "name"),
        "description": p.description,
        "brand": {"name": p.brand, "country": p.brand_country},
        "price": {
            "amount": None if p.price_cents is None else p.price_cents / 100,
            "currency": p.currency,
        },
        "stock": p.stock,
        "categories": [{"id": c["id"], "name": c["name"]} for c in p.categories],
        "created_at": p.created_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
    }


def v3_document(p: Product) -> dict[str, Any]:
    return {
        "title": _required(p, "name"),
        "brand": p.brand,
        "price": None if p.price_cents is None else p.price_cents / 100,
        "categories": [c["name"] for c in p.categories],
    }


def in_stock(p: Product) -> bool:
    return p.stock > 0


V1: IndexVersion[Product] = IndexVersion(
    key="v1",
    index="products_v1",
    transform=v1_document,
    needs=frozenset(
        {
            "sku",
            "name",
            "description",
            "brand",
            "price_cents",
            "currency",
            "stock",
            "categories",
            "updated_at",
        }
    ),
    mappings={
        "properties": {
            "sku": {"type": "keyword"},
            "name": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}},
            "description": {"type": "text"},
            "brand": {"type": "keyword"},
            "price_cents": {"type": "integer"},
            "currency": {"type": "keyword"},
            "stock": {"type": "integer"},
            "categories": {"type": "keyword"},
            "updated_at": {"type": "date"},
        }
    },
    settings={"index": {"number_of_shards": 1}},
)

V2: IndexVersion[Product] = IndexVersion(
    key="v2",
    index="products_v2",
    transform=v2_document,
    needs=frozenset(
        {
            "sku",
            "name",
            "description",
            "brand",
            "brand_country",
            "price_cents",
            "currency",
            "stock",
            "categories",
            "created_at",
            "updated_at",
        }
    ),
    mappings={
        "dynamic": "strict",
        "properties": {
            "sku": {"type": "keyword"},
            "title": {
                "type": "text",
                "analyzer": "english",
                "fields": {"raw": {"type": "keyword", "ignore_above": 256}},
            },
            "description": {"type": "text", "analyzer": "english"},
            "brand": {"properties": {"name": {"type": "keyword"}, "country": {"type": "keyword"}}},
            "price": {"properties": {"amount": {"type": "double"}, "currency": {"type": "keyword"}}},
            "stock": {"type": "short"},
            "categories": {
                "type": "nested",
                "properties": {"id": {"type": "integer"}, "name": {"type": "keyword"}},
            },
            "created_at": {"type": "date"},
            "updated_at": {"type": "date"},
        },
    },
    settings={"index": {"number_of_shards": 1}},
)

V3: IndexVersion[Product] = IndexVersion(
    key="v3",
    index="products_v3",
    transform=v3_document,
    predicate=in_stock,
    needs=frozenset({"name", "brand", "price_cents", "categories", "stock"}),
    mappings={
        "properties": {
            "title": {"type": "search_as_you_type"},
            "brand": {"type": "keyword"},
            "price": {"type": "scaled_float", "scaling_factor": 100},
            "categories": {"type": "keyword"},
        }
    },
    settings={"index": {"number_of_shards": 1}},
)

VERSIONS: tuple[IndexVersion[Product], ...] = (V1, V2, V3)


# --- The same documents built in PostgreSQL (etl_core.model.built): opt-in twins of v1 and v3 ---
# The page query returns each document as JSON; Python only frames the _bulk line. The Python
# transforms above stay their definition: validation compares every document with them, which is
# how these twins are proved equal (tests/integration/test_sql_documents.py), and the benchmark
# runs v1 and v1sql on the same rows (benchmarks/run.py).


def _names(c: Any) -> Any:
    """The categories' names, in the jsonb array's order: ``[c["name"] for c in p.categories]``."""
    return func.jsonb_path_query_array(c.categories, cast(literal("$[*].name", String), JSONPATH))


def v1_document_sql(c: Any) -> Any:
    """:func:`v1_document` as one ``json_build_object`` (NULL, so a dead letter, without a name)."""
    document = func.json_build_object(
        "sku", c.sku,
        "name", c.name,
        "description", c.description,
        "brand", c.brand,
        "price_cents", c.price_cents,
        "currency", c.currency,
        "stock", c.stock,
        "categories", _names(c),
        "updated_at", isoformat(c.updated_at),
    )  # fmt: skip
    return case((c.name.is_(None), null()), else_=document)


def v3_document_sql(c: Any) -> Any:
    """:func:`v3_document`: the price divided in float8, as Python divides."""
    price = case((c.price_cents.is_(None), null()), else_=cast(c.price_cents, Float(53)) / 100)
    document = func.json_build_object(
        "title", c.name, "brand", c.brand, "price", price, "categories", _names(c)
    )
    return case((c.name.is_(None), null()), else_=document)


V1_SQL: IndexVersion[Product] = replace(V1, key="v1sql", index="products_v1sql", document_sql=v1_document_sql)
V3_SQL: IndexVersion[Product] = replace(
    V3,
    key="v3sql",
    index="products_v3sql",
    document_sql=v3_document_sql,
    predicate_sql=lambda c: c.stock > 0,
)
