"""Hostile rows: what a real table of messy text holds, each labelled with the versions it breaks.

Sizes from empty to past a request limit, every Unicode plane, control characters, bidi marks,
empty and whitespace-only fields, NULL in every nullable column, numbers at the edges of the
demo mappings. PostgreSQL itself refuses NUL in text and lone surrogates, so those cannot reach
the pipeline and are not generated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

PLANES = "".join(
    chr(c)
    for c in (
        0x41,  # plane 0, Basic Latin
        0xE9,
        0x5D0,  # Hebrew (right to left)
        0x4E2D,  # CJK
        0xFFFD,
        0xFFFE,  # a noncharacter
        0xFEFF,  # a byte order mark
        0x1F600,  # plane 1, emoji
        0x20000,  # plane 2, CJK extension B
        0x30000,  # plane 3
        0xE0001,  # plane 14, language tag
        0xF0000,  # plane 15, private use
        0x10FFFD,  # plane 16, private use
    )
)
CONTROLS = "".join(chr(c) for c in (*range(1, 32), 0x7F, 0x85, 0x2028, 0x2029))
BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069abc\u202e"
KEYWORD_LIMIT = 32766  # bytes: Lucene refuses a longer term ("immense term")


@dataclass(frozen=True)
class HostileRow:
    label: str
    values: dict[str, Any]
    breaks: frozenset[str] = field(default_factory=frozenset)
    """Demo versions that must dead-letter this row (v3 only if the row is in stock)."""


def hostile_rows(past_limit_bytes: int) -> Iterator[HostileRow]:
    base = {"description": "plain", "brand_id": 1, "price_cents": 100, "currency": "EUR", "stock": 1}

    def row(label: str, breaks: set[str] | None = None, **values: Any) -> HostileRow:
        return HostileRow(label, {**base, "name": label, **values}, frozenset(breaks or ()))

    for n in (0, 1, 255, 256, 257, 10_000):  # name.raw's ignore_above is 256 characters
        yield row(f"name-{n}", name="n" * n)
    yield row("empty-fields", name="", description="")
    yield row("whitespace-only", name=" \t\r\n\u00a0\u3000", description="   ")
    yield row("every-plane", name=PLANES, description=PLANES * 100)
    yield row("controls", name=CONTROLS, description=CONTROLS)
    yield row("bidi", name=BIDI, description=BIDI)
    yield row("combining", name="e\u0301\u0302\u0303" * 50 + "\u200d\u200c")
    yield row("json-lookalike", name='{"index":{"_index":"x"}}\n{"a":1}', description="\\u0000 \\n")
    yield row("null-name", {"v1", "v2", "v3"}, name=None)
    yield row("null-description", description=None)
    yield row("null-brand", brand_id=None)
    yield row("null-price", price_cents=None)
    yield row("all-nulls", {"v1", "v2", "v3"}, name=None, description=None, brand_id=None, price_cents=None)
    yield row("negative-stock", stock=-1)  # v3's predicate drops it
    yield row("stock-at-short-max", stock=32767)
    yield row("stock-past-short", {"v2"}, stock=32768)
    yield row("price-edges", price_cents=-(2**31))
    # sku is a keyword without ignore_above in v1 and v2: one byte past Lucene's term limit
    yield row("immense-sku", {"v1", "v2"}, sku="s" * (KEYWORD_LIMIT + 1))
    yield row("sku-at-limit", sku="\u00e9" * (KEYWORD_LIMIT // 2))  # 32766 bytes of 2-byte chars
    yield row("description-1mb", description="d" * 1024 * 1024)
    yield row("description-past-limit", {"v1", "v2"}, description="p" * past_limit_bytes)


def insert_hostile(engine: Engine, rows: list[HostileRow]) -> dict[str, HostileRow]:
    """Insert the rows; returns them by product id (as a document id)."""
    by_id: dict[str, HostileRow] = {}
    with engine.begin() as conn:
        for i, r in enumerate(rows):
            values = {"sku": f"HOSTILE-{i}", **r.values}
            new_id = conn.execute(
                text(
                    "INSERT INTO products (sku, name, description, brand_id, price_cents, currency, stock) "
                    "VALUES (:sku, :name, :description, :brand_id, :price_cents, :currency, :stock) "
                    "RETURNING id"
                ),
                values,
            ).scalar_one()
            by_id[str(new_id)] = r
    return by_id
