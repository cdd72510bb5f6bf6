-- A trustworthy change column, for the tests of change-column mode (CATALOGUE_BY_COLUMN): the
-- kind of stamp a user's own table may already carry. The demo itself uses generated change
-- capture (catalogue/source.py: TRACKING) and installs none of this.
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
