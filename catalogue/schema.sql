-- Demo e-commerce catalogue. Every change that alters a product's documents touches
-- products.updated_at, so one change column orders everything the index needs to see.
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

-- now() is the transaction's start: the high watermark relies on that. The greatest() keeps a
-- row's stamp monotonic when an older transaction updates it after a newer one committed, so the
-- external version in OpenSearch never goes backwards for the same row.
CREATE OR REPLACE FUNCTION catalogue_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 microsecond');
    ELSE
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION catalogue_touch_products_of_brand() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products SET updated_at = now() WHERE brand_id = NEW.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalogue_touch_products_of_category() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products SET updated_at = now()
    WHERE id IN (SELECT product_id FROM product_categories WHERE category_id = NEW.id);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalogue_touch_product_of_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products SET updated_at = now()
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.product_id ELSE NEW.product_id END;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS products_touch ON products;
CREATE TRIGGER products_touch BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch();
DROP TRIGGER IF EXISTS brands_touch ON brands;
CREATE TRIGGER brands_touch BEFORE INSERT OR UPDATE ON brands
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch();
DROP TRIGGER IF EXISTS brands_touch_products ON brands;
CREATE TRIGGER brands_touch_products AFTER UPDATE ON brands
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch_products_of_brand();
DROP TRIGGER IF EXISTS categories_touch ON categories;
CREATE TRIGGER categories_touch BEFORE INSERT OR UPDATE ON categories
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch();
DROP TRIGGER IF EXISTS categories_touch_products ON categories;
CREATE TRIGGER categories_touch_products AFTER UPDATE ON categories
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch_products_of_category();
DROP TRIGGER IF EXISTS product_categories_touch ON product_categories;
CREATE TRIGGER product_categories_touch AFTER INSERT OR DELETE ON product_categories
    FOR EACH ROW EXECUTE FUNCTION catalogue_touch_product_of_link();
