-- 0004_views: reporting views. Totals are derived at read time rather than stored on
-- orders, so they can never disagree with the lines they summarise (3NF). If they become
-- a hot spot, a materialized view can replace them without changing callers.
--
-- Shared rule: cancelled and refunded orders are still counted as orders, but they do not
-- add to money spent or to products sold, because that money did not (or no longer) flow.

-- One row per order, including orders that have no lines yet. LEFT JOIN keeps those
-- orders and coalesce turns their NULL sums into 0, so callers never special-case them.
-- item_count is the number of distinct lines (products), unit_count the number of pieces.
-- total is cast to numeric(12,2) to keep the money type of the base columns.
CREATE VIEW order_totals AS
SELECT o.order_id,
       o.user_id,
       o.order_date,
       o.status,
       count(oi.product_id)                                 AS item_count,
       coalesce(sum(oi.quantity), 0)                        AS unit_count,
       coalesce(sum(oi.quantity * oi.unit_price), 0)::numeric(12,2) AS total
FROM orders o
LEFT JOIN order_items oi ON oi.order_id = o.order_id
GROUP BY o.order_id;


-- One row per user, including users who never ordered (LEFT JOIN), so a customer list
-- can be built from this view alone. Grouping by the primary key lets email and name be
-- selected without aggregating them (functional dependency).
-- total_spent is numeric(14,2), wider than a single order, because it sums many orders
-- and an overflow error in a report would be worse than two extra digits.
CREATE VIEW customer_order_summary AS
SELECT u.user_id,
       u.email,
       u.name,
       count(ot.order_id) AS order_count,
       coalesce(sum(ot.total) FILTER (WHERE ot.status NOT IN ('cancelled', 'refunded')), 0)::numeric(14,2)
                          AS total_spent,
       max(ot.order_date) AS last_order_date
FROM users u
LEFT JOIN order_totals ot ON ot.user_id = u.user_id
GROUP BY u.user_id;


-- One row per product, including products never sold. The inner join to orders is
-- nested inside the LEFT JOIN so that filtering out cancelled and refunded orders
-- cannot drop the product row itself.
CREATE VIEW product_sales AS
SELECT p.product_id,
       p.sku,
       p.product_name,
       coalesce(sum(oi.quantity), 0)                                AS units_sold,
       coalesce(sum(oi.quantity * oi.unit_price), 0)::numeric(14,2) AS revenue
FROM products p
LEFT JOIN (order_items oi
           JOIN orders o
             ON o.order_id = oi.order_id
            AND o.status NOT IN ('cancelled', 'refunded'))
       ON oi.product_id = p.product_id
GROUP BY p.product_id;
