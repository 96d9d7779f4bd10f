-- 0005_citus: the view order_lines everywhere, and on a Citus coordinator the distribution.
--
-- On plain PostgreSQL this file only creates order_lines (the order and line columns that
-- user-level reports read together) and category_paths(). When the citus extension exists in this database, the
-- DO block below distributes the shop (docs/scale-out.md):
--   * users, user_profiles, addresses, orders, order_items and payments are distributed by
--     user_id and co-located, so everything of one customer lives in one shard group and an
--     order is placed in one transaction on one worker node,
--   * categories, products and product_categories become reference tables (a copy on each node),
--     so joins from any shard to the catalog stay local.
-- What Citus requires, and what it changes here (on Citus only):
--   * a unique or primary key on a distributed table must contain the distribution column, so the
--     keys of addresses, orders, order_items and payments gain user_id, and order_items and
--     payments gain a user_id column (filled from their order, NOT NULL) with the foreign keys to
--     orders on (order_id, user_id). Writers must supply it (the shop's code does).
--   * the unique index on lower(email) cannot be enforced across shards: it becomes a plain index.
--   * ON DELETE SET NULL (shipping_address_id) is not supported when the key holds the
--     distribution column: deleting an address that an order used is refused instead.
--   * joins on order_id alone between orders and order_items need repartitioning: enabled for
--     this database, in sequential mode, which Citus needs when tables with foreign keys to
--     reference tables are read and written in one transaction.
-- The views that join orders to their lines are restated to join on user_id too, so they run in
-- one shard group per user. Distribution needs empty or small tables: run it on a new database.

CREATE VIEW order_lines AS
SELECT o.order_id,
       o.user_id,
       o.order_date,
       o.status,
       oi.product_id,
       oi.quantity,
       oi.unit_price
FROM orders o
JOIN order_items oi ON oi.order_id = o.order_id;

-- Every category with its full path, e.g. 'Books / Fiction' (sibling names repeat under
-- different parents). A function rather than a recursive CTE in each report: Citus cannot plan a
-- recursive CTE inside a query over distributed tables, but it runs this call on the coordinator
-- and joins its rows like any other. PL/pgSQL, so that the planner does not inline it.
CREATE FUNCTION category_paths() RETURNS TABLE (category_id bigint, path text)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN QUERY
    WITH RECURSIVE tree (cid, cpath) AS (
        SELECT c.category_id, c.name::text FROM categories c WHERE c.parent_id IS NULL
        UNION ALL
        SELECT c.category_id, t.cpath || ' / ' || c.name
        FROM categories c JOIN tree t ON c.parent_id = t.cid
    )
    SELECT t.cid, t.cpath FROM tree t;
END
$fn$;

DO $citus$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    EXECUTE 'ALTER DATABASE ' || quote_ident(current_database()) || ' SET citus.enable_repartition_joins = on';
    EXECUTE 'ALTER DATABASE ' || quote_ident(current_database()) || ' SET citus.multi_shard_modify_mode = sequential';

    DROP INDEX users_email_lower_key;
    CREATE INDEX users_email_lower_idx ON users (lower(email));

    ALTER TABLE addresses DROP CONSTRAINT addresses_pkey;
    ALTER TABLE addresses ADD CONSTRAINT addresses_pkey PRIMARY KEY (address_id, user_id);
    ALTER TABLE orders DROP CONSTRAINT orders_shipping_address_fkey;
    ALTER TABLE orders ADD CONSTRAINT orders_shipping_address_fkey
        FOREIGN KEY (shipping_address_id, user_id) REFERENCES addresses (address_id, user_id);

    ALTER TABLE order_items ADD COLUMN user_id bigint;
    UPDATE order_items oi SET user_id = o.user_id FROM orders o WHERE o.order_id = oi.order_id;
    ALTER TABLE order_items ALTER COLUMN user_id SET NOT NULL;
    ALTER TABLE payments ADD COLUMN user_id bigint;
    UPDATE payments p SET user_id = o.user_id FROM orders o WHERE o.order_id = p.order_id;
    ALTER TABLE payments ALTER COLUMN user_id SET NOT NULL;

    -- the views name orders' key (order_totals groups by it): restated without depending on it
    CREATE OR REPLACE VIEW order_totals AS
    SELECT o.order_id, o.user_id, o.order_date, o.status,
           count(oi.product_id) AS item_count,
           coalesce(sum(oi.quantity), 0) AS unit_count,
           coalesce(sum(oi.quantity * oi.unit_price), 0)::numeric(12,2) AS total
    FROM orders o
    LEFT JOIN order_items oi ON oi.order_id = o.order_id AND oi.user_id = o.user_id
    GROUP BY o.order_id, o.user_id, o.order_date, o.status;
    CREATE OR REPLACE VIEW product_sales AS
    SELECT p.product_id, p.sku, p.product_name,
           coalesce(sum(oi.quantity), 0) AS units_sold,
           coalesce(sum(oi.quantity * oi.unit_price), 0)::numeric(14,2) AS revenue
    FROM products p
    LEFT JOIN (order_items oi
               JOIN orders o
                 ON o.order_id = oi.order_id AND o.user_id = oi.user_id
                AND o.status NOT IN ('cancelled', 'refunded'))
           ON oi.product_id = p.product_id
    GROUP BY p.product_id;
    CREATE OR REPLACE VIEW order_lines AS
    SELECT o.order_id, o.user_id, o.order_date, o.status, oi.product_id, oi.quantity, oi.unit_price
    FROM orders o
    JOIN order_items oi ON oi.order_id = o.order_id AND oi.user_id = o.user_id;

    ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
    ALTER TABLE payments DROP CONSTRAINT payments_order_id_fkey;
    ALTER TABLE orders DROP CONSTRAINT orders_pkey;
    ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id, user_id);
    ALTER TABLE order_items DROP CONSTRAINT order_items_pkey;
    ALTER TABLE order_items ADD CONSTRAINT order_items_pkey PRIMARY KEY (order_id, product_id, user_id);
    ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
        FOREIGN KEY (order_id, user_id) REFERENCES orders (order_id, user_id) ON DELETE CASCADE;
    ALTER TABLE payments DROP CONSTRAINT payments_pkey;
    ALTER TABLE payments ADD CONSTRAINT payments_pkey PRIMARY KEY (payment_id, user_id);
    ALTER TABLE payments ADD CONSTRAINT payments_order_id_fkey
        FOREIGN KEY (order_id, user_id) REFERENCES orders (order_id, user_id) ON DELETE RESTRICT;

    -- a foreign key from a local table to a reference table would turn the whole connected
    -- graph into Citus-managed local tables: the lines' key to products comes back at the end
    ALTER TABLE order_items DROP CONSTRAINT order_items_product_id_fkey;
    PERFORM create_reference_table('categories');
    PERFORM create_reference_table('products');
    PERFORM create_reference_table('product_categories');
    PERFORM create_distributed_table('users', 'user_id');
    PERFORM create_distributed_table('user_profiles', 'user_id', colocate_with => 'users');
    PERFORM create_distributed_table('addresses', 'user_id', colocate_with => 'users');
    PERFORM create_distributed_table('orders', 'user_id', colocate_with => 'users');
    PERFORM create_distributed_table('order_items', 'user_id', colocate_with => 'users');
    PERFORM create_distributed_table('payments', 'user_id', colocate_with => 'users');
    ALTER TABLE order_items ADD CONSTRAINT order_items_product_id_fkey
        FOREIGN KEY (product_id) REFERENCES products (product_id) ON DELETE RESTRICT;
END
$citus$;
