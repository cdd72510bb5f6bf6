-- Demo e-commerce catalogue: products with a brand and categories (through a link table).
-- updated_at is ordinary data here (the application's own stamp); the sync does not rely on it.
CREATE TABLE IF NOT EXISTS brands (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    country     text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS categories (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    parent_id   integer REFERENCES categories(id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS products (
    id           bigserial PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    name         text,
    description  text,
    brand_id     integer REFERENCES brands(id),
    price_cents  integer,
    currency     text NOT NULL DEFAULT 'EUR',
    stock        integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE TABLE IF NOT EXISTS product_categories (
    product_id   bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    category_id  integer NOT NULL REFERENCES categories(id),
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX IF NOT EXISTS products_change_order ON products (updated_at, id);
CREATE INDEX IF NOT EXISTS product_categories_category ON product_categories (category_id);

-- Change capture is generated from the declaration in catalogue/source.py (TRACKING) and applied
-- by create_schema: `python -m etl_core --source catalogue.source:CATALOGUE tracking plan` prints
-- it. Databases made by earlier versions of the demo carried hand-written triggers that rewrote
-- product rows; they are removed here.
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
