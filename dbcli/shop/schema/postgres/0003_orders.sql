-- 0003_orders: orders, their lines and their payments. These rows are financial records,
-- so the delete rules here lean towards refusing rather than silently removing history.

CREATE TABLE orders (
    order_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: deleting a customer must never delete their invoices (accounting and tax
    -- retention). Anonymise the user row instead of deleting it if it has orders.
    user_id             bigint      NOT NULL
                        CONSTRAINT orders_user_id_fkey
                        REFERENCES users (user_id) ON DELETE RESTRICT,
    order_date          timestamptz NOT NULL DEFAULT now(),
    status              text        NOT NULL DEFAULT 'pending'
                        CONSTRAINT orders_status_check
                        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered',
                                          'cancelled', 'refunded')),
    -- Nullable: an order can exist before an address is chosen, and a customer may later
    -- delete the address from their address book.
    shipping_address_id bigint,
    -- Composite FK: the address must belong to the same user as the order, which a plain
    -- FK on shipping_address_id alone cannot guarantee.
    -- SET NULL (shipping_address_id) (PostgreSQL 15+ column list) clears only the address
    -- and keeps user_id, so removing an address from the address book never blocks on,
    -- nor deletes, the orders that used it. If shipped-to addresses must be kept for
    -- audit, snapshot them onto the order at checkout instead of relying on this link.
    CONSTRAINT orders_shipping_address_fkey
        FOREIGN KEY (shipping_address_id, user_id)
        REFERENCES addresses (address_id, user_id)
        ON DELETE SET NULL (shipping_address_id)
);

-- "Orders of a user, newest first". Also the FK index for user_id (leading column).
CREATE INDEX orders_user_id_order_date_idx ON orders (user_id, order_date);
-- Date-range reports across all users.
CREATE INDEX orders_order_date_idx ON orders (order_date);
-- Work queues such as "pending orders, oldest first". status leads, so it also serves a
-- plain status filter.
CREATE INDEX orders_status_order_date_idx ON orders (status, order_date);
-- FK index (same columns as the composite FK) so deleting an address does not scan all
-- orders. Partial because the FK lookup is always for a concrete address and rows with a
-- NULL address can never match, so there is no point indexing them.
CREATE INDEX orders_shipping_address_id_user_id_idx ON orders (shipping_address_id, user_id)
    WHERE shipping_address_id IS NOT NULL;


CREATE TABLE order_items (
    -- CASCADE: lines are part of the order, not independent records. Whether the order
    -- itself may be deleted is decided by payments (RESTRICT) and by the application.
    order_id   bigint        NOT NULL
               CONSTRAINT order_items_order_id_fkey
               REFERENCES orders (order_id) ON DELETE CASCADE,
    -- RESTRICT: a product that was ever sold must stay, or order history loses its
    -- meaning. Retire it with products.active = false.
    product_id bigint        NOT NULL
               CONSTRAINT order_items_product_id_fkey
               REFERENCES products (product_id) ON DELETE RESTRICT,
    quantity   integer       NOT NULL CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    -- The price at the moment of purchase. Not derivable from products.price, which
    -- changes over time, so storing it here is not a 3NF violation but a separate fact.
    unit_price numeric(12,2) NOT NULL CONSTRAINT order_items_unit_price_check CHECK (unit_price >= 0),
    -- One line per product per order: buying more of the same product raises quantity.
    CONSTRAINT order_items_pkey PRIMARY KEY (order_id, product_id)
);

-- Product sales reports and the FK check when a product is deleted. order_id needs no
-- extra index: it leads the primary key.
CREATE INDEX order_items_product_id_idx ON order_items (product_id);

COMMENT ON COLUMN order_items.unit_price IS
    'Price captured at purchase time. Later changes to products.price must not alter past orders.';


CREATE TABLE payments (
    payment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: a payment is money that moved. An order with payments cannot be deleted
    -- (it should be cancelled or refunded instead), and this also stops the order_items
    -- cascade from wiping the lines of a paid order.
    order_id   bigint        NOT NULL
               CONSTRAINT payments_order_id_fkey
               REFERENCES orders (order_id) ON DELETE RESTRICT,
    -- Refunds are recorded with status = 'refunded', not as negative amounts, so the
    -- sign never has to be interpreted.
    amount     numeric(12,2) NOT NULL CONSTRAINT payments_amount_check CHECK (amount > 0),
    method     text
               CONSTRAINT payments_method_check
               CHECK (method IN ('card', 'paypal', 'bank_transfer', 'gift_card', 'cash_on_delivery')),
    status     text          NOT NULL DEFAULT 'pending'
               CONSTRAINT payments_status_check
               CHECK (status IN ('pending', 'completed', 'failed', 'refunded')),
    paid_at    timestamptz,
    created_at timestamptz   NOT NULL DEFAULT now()
);

-- FK index (payments of an order, and the RESTRICT check when an order is deleted).
CREATE INDEX payments_order_id_idx ON payments (order_id);
-- Reconciliation reports ("failed payments", "pending payments").
CREATE INDEX payments_status_idx ON payments (status);
