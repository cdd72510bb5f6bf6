"""Demo data: a deterministic catalogue (``--rows N --seed S``) and a churn mode for live demos.

Churn mixes inserts, updates, soft and hard deletes, brand renames and category moves, and runs a
share of them in long transactions that commit out of order — exactly what the high watermark
must survive.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from catalogue.source import TRACKING, metadata

WORDS = (
    "alpine amber arctic atlas aurora basalt birch breeze canyon cedar cobalt coral crimson delta "
    "ember fern fjord flint frost garnet glacier granite harbor hazel indigo iris jade juniper "
    "lagoon lava linen lotus maple meadow mesa mint nova oak onyx opal orchid pebble pine prairie "
    "quartz raven reef river sage sierra slate solar spruce storm summit tide timber topaz tundra "
    "velvet willow zephyr"
).split()
KINDS = (
    "jacket boots tent backpack lamp kettle mug stove chair table blanket rope knife "
    "bottle glove hat scarf sock map compass"
).split()
COUNTRIES = "DE FR IT ES SE NO FI DK NL BE AT CH PL CZ PT IE GB US CA JP".split()
CATEGORY_TREE = {
    "Outdoor": ["Camping", "Climbing", "Hiking", "Water sports"],
    "Home": ["Kitchen", "Lighting", "Furniture", "Textiles"],
    "Clothing": ["Jackets", "Footwear", "Accessories", "Base layers"],
    "Travel": ["Bags", "Navigation", "Comfort"],
}


# Databases made by earlier versions of the demo carried hand-written triggers that rewrote
# product rows; the generated change capture replaces them.
_LEGACY_TRIGGERS = """
DROP TRIGGER IF EXISTS products_touch ON products;
DROP TRIGGER IF EXISTS brands_touch ON brands;
DROP TRIGGER IF EXISTS brands_touch_products ON brands;
DROP TRIGGER IF EXISTS categories_touch ON categories;
DROP TRIGGER IF EXISTS categories_touch_products ON categories;
DROP TRIGGER IF EXISTS product_categories_touch ON product_categories;
DROP FUNCTION IF EXISTS catalogue_touch();
DROP FUNCTION IF EXISTS catalogue_touch_products_of_brand();
DROP FUNCTION IF EXISTS catalogue_touch_products_of_category();
DROP FUNCTION IF EXISTS catalogue_touch_product_of_link();
"""


def create_schema(engine: Engine) -> None:
    """The demo tables (from their SQLAlchemy declaration), then their generated change capture;
    idempotent, like a user's apply."""
    with engine.begin() as conn:
        metadata.create_all(conn, checkfirst=True)
        conn.exec_driver_sql(_LEGACY_TRIGGERS)
    TRACKING.apply(engine)


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE product_categories, products, brands, categories RESTART IDENTITY CASCADE"
        )


def _name(rng: random.Random) -> str:
    return f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {rng.choice(KINDS)}"


def _description(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) + "."


def generate(engine: Engine, rows: int, seed: int = 42) -> dict[str, int]:
    """Append ``rows`` products (with brands and categories on first use), deterministically."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        n_brands = _ensure_brands(conn, rng, max(5, min(2000, rows // 200)))
        category_ids = _ensure_categories(conn)
        first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM products").scalar_one())
        # COPY: the generated tracking logs one entry per key of each statement, so bulk is cheap.
        with raw.cursor() as cur:
            with cur.copy(
                "COPY products (id, sku, name, description, brand_id, price_cents, "
                "currency, stock) FROM STDIN"
            ) as copy:
                for i in range(first, first + rows):
                    copy.write_row(
                        (
                            i,
                            f"SKU-{seed}-{i:08d}",
                            _name(rng),
                            _description(rng),
                            rng.randint(1, n_brands),
                            rng.randint(199, 99_999),
                            "EUR",
                            rng.choice((0, 0, *range(1, 500))),
                        )
                    )
            # fresh statistics first: otherwise the foreign-key checks of the next COPY are planned
            # for an empty products table (a sequential scan per row, quadratic at a million)
            cur.execute("ANALYZE products")
            with cur.copy("COPY product_categories (product_id, category_id) FROM STDIN") as copy:
                for i in range(first, first + rows):
                    for c in rng.sample(category_ids, rng.randint(1, 3)):
                        copy.write_row((i, c))
        conn.exec_driver_sql("SELECT setval('products_id_seq', (SELECT max(id) FROM products))")
    return {"products": rows, "brands": n_brands, "categories": len(category_ids)}


def _ensure_brands(conn: Connection, rng: random.Random, n: int) -> int:
    have = int(conn.exec_driver_sql("SELECT count(*) FROM brands").scalar_one())
    for _ in range(have, n):
        conn.execute(
            text("INSERT INTO brands (name, country) VALUES (:n, :c)"),
            {"n": f"{rng.choice(WORDS).title()}{rng.choice(KINDS).title()}", "c": rng.choice(COUNTRIES)},
        )
    return max(have, n)


def _ensure_categories(conn: Connection) -> list[int]:
    if not conn.exec_driver_sql("SELECT count(*) FROM categories").scalar_one():
        for parent, children in CATEGORY_TREE.items():
            pid = conn.execute(
                text("INSERT INTO categories (name) VALUES (:n) RETURNING id"), {"n": parent}
            ).scalar_one()
            for child in children:
                conn.execute(
                    text("INSERT INTO categories (name, parent_id) VALUES (:n, :p)"), {"n": child, "p": pid}
                )
    return [int(r[0]) for r in conn.exec_driver_sql("SELECT id FROM categories ORDER BY id")]


OPS = (
    ("update", 45),
    ("insert", 20),
    ("soft_delete", 8),
    ("restore", 4),
    ("hard_delete", 5),
    ("recategorise", 10),
    ("rename_brand", 3),
    ("out_of_stock", 5),
    ("uncategorise", 4),
    ("rename_category", 2),
)


def _one_op(engine: Engine, rng: random.Random, op: str, hold_s: float) -> None:
    with engine.begin() as conn:
        # A random existing product without scanning the table: the first id at a random point.
        pick = (
            "(SELECT id FROM products WHERE id >= (SELECT floor(random() * max(id)) "
            "FROM products) ORDER BY id LIMIT 1)"
        )
        if op == "update":
            conn.execute(
                text(f"UPDATE products SET price_cents = :p, stock = :s WHERE id = {pick}"),
                {"p": rng.randint(199, 99_999), "s": rng.randint(0, 500)},
            )
        elif op == "insert":
            conn.execute(
                text(
                    "INSERT INTO products (sku, name, description, brand_id, price_cents, stock) "
                    "VALUES ('SKU-CHURN-' || nextval('products_id_seq'), :n, :d, "
                    "(SELECT id FROM brands ORDER BY random() LIMIT 1), :p, :s)"
                ),
                {
                    "n": _name(rng),
                    "d": _description(rng),
                    "p": rng.randint(199, 99_999),
                    "s": rng.randint(0, 500),
                },
            )
        elif op == "soft_delete":
            conn.exec_driver_sql(f"UPDATE products SET deleted_at = now() WHERE id = {pick}")
        elif op == "restore":
            conn.exec_driver_sql(
                "UPDATE products SET deleted_at = NULL WHERE id = "
                "(SELECT id FROM products WHERE deleted_at IS NOT NULL ORDER BY random() LIMIT 1)"
            )
        elif op == "hard_delete":
            conn.exec_driver_sql(f"DELETE FROM products WHERE id = {pick}")
        elif op == "recategorise":
            conn.exec_driver_sql(
                f"INSERT INTO product_categories (product_id, category_id) SELECT {pick}, "
                "(SELECT id FROM categories ORDER BY random() LIMIT 1) ON CONFLICT DO NOTHING"
            )
        elif op == "rename_brand":
            conn.execute(
                text(
                    "UPDATE brands SET name = name || '+' WHERE id = "
                    "(SELECT id FROM brands ORDER BY random() LIMIT 1)"
                )
            )
        elif op == "out_of_stock":
            conn.exec_driver_sql(f"UPDATE products SET stock = 0 WHERE id = {pick}")
        elif op == "uncategorise":
            conn.exec_driver_sql(f"DELETE FROM product_categories WHERE product_id = {pick}")
        elif op == "rename_category":
            conn.exec_driver_sql(
                "UPDATE categories SET name = name || '*' WHERE id = "
                "(SELECT id FROM categories ORDER BY random() LIMIT 1)"
            )
        if hold_s:
            time.sleep(hold_s)  # a long transaction: stamped at its start, committed much later


def churn(
    engine: Engine,
    *,
    rate: float,
    seconds: float,
    seed: int = 7,
    long_share: float = 0.05,
    long_max_s: float = 3.0,
    workers: int = 4,
    stop: threading.Event | None = None,
) -> Counter[str]:
    """Run random changes at ``rate`` per second for ``seconds`` (or until ``stop`` is set)."""
    rng = random.Random(seed)
    names, weights = zip(*OPS, strict=True)
    done: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    stop = stop or threading.Event()

    def run(op: str, hold: float, op_seed: int) -> None:
        try:
            _one_op(engine, random.Random(op_seed), op, hold)
        except DBAPIError:  # e.g. two writers picked the same row: churn goes on
            with lock:
                done["conflicts"] += 1
            return
        with lock:
            done[op] += 1
            if hold:
                done["long_transactions"] += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = []
        while time.monotonic() < deadline and not stop.is_set():
            op = rng.choices(names, weights)[0]
            hold = rng.uniform(0.5, long_max_s) if rng.random() < long_share else 0.0
            futures.append(pool.submit(run, op, hold, rng.getrandbits(32)))
            time.sleep(1.0 / rate)
        for f in futures:
            f.result()
    return done
