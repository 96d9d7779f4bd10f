-- 0002_catalog: categories (a tree), products and the many-to-many link between them.

CREATE TABLE categories (
    category_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    -- RESTRICT rather than SET NULL or CASCADE: deleting a parent must be a deliberate
    -- step (move or delete the children first). SET NULL would silently promote every
    -- child to the top level, where it may even collide with an existing top-level
    -- category of the same name, and CASCADE would silently drop a whole subtree together
    -- with its product links.
    parent_id   bigint
                CONSTRAINT categories_parent_id_fkey
                REFERENCES categories (category_id) ON DELETE RESTRICT,
    -- The smallest possible cycle. Longer cycles would need a trigger, which is not worth
    -- it for an admin-maintained tree.
    CONSTRAINT categories_not_own_parent CHECK (parent_id <> category_id),
    -- Sibling names must be unique. NULLS NOT DISTINCT (PostgreSQL 15+) makes this hold
    -- for top-level categories too, where parent_id is NULL and a plain UNIQUE would treat
    -- every NULL as different and allow duplicates.
    -- It also serves as the index for parent_id lookups (parent_id is its leading column).
    CONSTRAINT categories_parent_id_name_key UNIQUE NULLS NOT DISTINCT (parent_id, name)
);


CREATE TABLE products (
    product_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The business key used by warehouses and imports. The surrogate key stays the FK
    -- target so that a SKU can be corrected without touching order history.
    sku          text          NOT NULL CONSTRAINT products_sku_key UNIQUE,
    product_name text          NOT NULL,
    description  text,
    -- Money is numeric, never float: binary floating point cannot represent 0.10 exactly
    -- and sums drift. 12,2 allows up to 9,999,999,999.99.
    price        numeric(12,2) NOT NULL CONSTRAINT products_price_check CHECK (price >= 0),
    -- Negative stock would mean selling what does not exist, so the database refuses it
    -- even if two concurrent checkouts both passed the application check.
    stock        integer       NOT NULL DEFAULT 0 CONSTRAINT products_stock_check CHECK (stock >= 0),
    -- Products referenced by orders cannot be deleted (order_items RESTRICT), so retiring
    -- a product means setting active = false.
    active       boolean       NOT NULL DEFAULT true,
    created_at   timestamptz   NOT NULL DEFAULT now()
);

-- Case-insensitive name search and sorting (WHERE lower(product_name) = ..., ORDER BY
-- lower(product_name)). Substring search (ILIKE with a leading wildcard) would need
-- pg_trgm, deliberately not required here.
CREATE INDEX products_lower_product_name_idx ON products (lower(product_name));


-- Many-to-many: a product can sit in several categories.
CREATE TABLE product_categories (
    -- A link row is meaningless once either side is gone, so it goes with either side.
    product_id  bigint NOT NULL
                CONSTRAINT product_categories_product_id_fkey
                REFERENCES products (product_id) ON DELETE CASCADE,
    category_id bigint NOT NULL
                CONSTRAINT product_categories_category_id_fkey
                REFERENCES categories (category_id) ON DELETE CASCADE,
    -- The composite key prevents linking the same pair twice and serves
    -- "categories of a product" through its leading column.
    CONSTRAINT product_categories_pkey PRIMARY KEY (product_id, category_id)
);

-- "Products in a category" and the FK check when a category is deleted: category_id is
-- not the leading column of the primary key, so it needs its own index.
CREATE INDEX product_categories_category_id_idx ON product_categories (category_id);
