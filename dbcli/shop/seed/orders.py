"""Sample orders, their items (the price at purchase) and their payments (a declined attempt at times)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from dbcli.shop.seed.rows import CHUNK, DAY, NULL, Chunk, SampleData, money, pick, timestamp, weights

ORDER_STATUS_OLD = (("delivered", 80), ("cancelled", 8), ("refunded", 5), ("shipped", 4), ("paid", 3))
ORDER_STATUS_NEW = (("pending", 20), ("paid", 30), ("shipped", 30), ("delivered", 12), ("cancelled", 8))
# users 1..FIRST_BUYERS place orders 1..FIRST_BUYERS (one each, at least), so a first query for
# user 1 (the getting-started `report run user-orders --param user_id=1`) finds rows
FIRST_BUYERS = 10
PAYMENT_METHODS = (("card", 60), ("paypal", 20), ("bank_transfer", 8), ("gift_card", 7),
                   ("cash_on_delivery", 5))

ORDER_COLUMNS = ("order_id", "user_id", "order_date", "status", "shipping_address_id")
ITEM_COLUMNS = ("order_id", "product_id", "quantity", "unit_price")
PAYMENT_COLUMNS = ("payment_id", "order_id", "amount", "method", "status", "paid_at", "created_at")


def order_chunks(data: SampleData) -> Iterator[Chunk]:
    """orders, order_items and payments, CHUNK orders at a time (users and products come first)."""
    if not data.n_orders:
        return
    rng, base = data.rng, data.base
    # a few customers order a lot and a few products sell a lot (log-normal weights: the top
    # customer orders some 20-30 times the average, not half of all orders)
    user_cw = list(itertools.accumulate(rng.lognormvariate(0, 1.0) for _ in range(data.n_users)))
    product_cw = list(itertools.accumulate(rng.lognormvariate(0, 1.2) for _ in range(data.n_products)))
    old_status, old_cw = weights(ORDER_STATUS_OLD)
    new_status, new_cw = weights(ORDER_STATUS_NEW)
    methods, method_cw = weights(PAYMENT_METHODS)
    products = range(data.n_products)
    payment_id = 0
    # the shop on Citus: lines and payments carry their order's user_id (the distribution column)
    owner = data.lines_carry_user
    item_columns = (*ITEM_COLUMNS, "user_id") if owner else ITEM_COLUMNS
    payment_columns = (*PAYMENT_COLUMNS, "user_id") if owner else PAYMENT_COLUMNS
    for start in range(1, data.n_orders + 1, CHUNK):
        end = min(start + CHUNK, data.n_orders + 1)
        buyers = rng.choices(range(data.n_users), cum_weights=user_cw, k=end - start)
        orders, items, payments = [], [], []
        for oid, u in zip(range(start, end), buyers, strict=True):
            if oid <= FIRST_BUYERS and oid <= data.n_users:
                u = oid - 1
            created = data.user_created[u]
            # ends 2 h before the base date, so even a retried payment lies before it
            when = created + int(rng.random() * (base - 7200 - created))
            recent = base - when < 30 * DAY
            status = pick(rng, new_status, new_cw) if recent else pick(rng, old_status, old_cw)
            ship = NULL if status == "pending" and rng.random() < 0.3 else str(data.user_ship[u])
            orders.append(f"{oid}\t{u + 1}\t{timestamp(when)}\t{status}\t{ship}\n")
            tail = f"\t{u + 1}\n" if owner else "\n"
            total = 0
            picked = rng.choices(products, cum_weights=product_cw, k=rng.choice((1, 1, 1, 2, 2, 3, 4, 5)))
            for p in dict.fromkeys(picked):  # one line per product, in first-picked order
                qty = rng.choice((1, 1, 1, 1, 1, 1, 2, 2, 3, 4))
                cents = data.price_cents[p]  # unit_price: the price at purchase
                total += qty * cents
                items.append(f"{oid}\t{p + 1}\t{qty}\t{money(cents)}{tail}")
            for pay_status, method, at, paid in _payments(rng, status, when, methods, method_cw):
                payment_id += 1
                payments.append(f"{payment_id}\t{oid}\t{money(total)}\t{method}\t{pay_status}"
                                f"\t{timestamp(paid) if paid else NULL}\t{timestamp(at)}{tail}")
        yield data.emit("orders", ORDER_COLUMNS, orders)
        yield data.emit("order_items", item_columns, items)
        yield data.emit("payments", payment_columns, payments, ("orders", end - 1, data.n_orders))


def _payments(rng: random.Random, status: str, when: int, methods: list[str],
              method_cw: list[int]) -> list[tuple[str, str, int, int | None]]:
    """(status, method, created_at, paid_at) of an order's payments, oldest first."""
    method = pick(rng, methods, method_cw)
    at = when + rng.randint(5, 600)
    if status == "pending":
        return [("pending", method, at, None)] if rng.random() < 0.5 else []
    if status == "cancelled":
        return [("failed", method, at, None)] if rng.random() < 0.3 else []
    out: list[tuple[str, str, int, int | None]] = []
    if rng.random() < 0.08:  # a declined attempt, then a successful one
        out.append(("failed", method, at, None))
        at += rng.randint(60, 3600)
        method = pick(rng, methods, method_cw)
    out.append(("refunded" if status == "refunded" else "completed", method, at, at + rng.randint(1, 30)))
    return out
