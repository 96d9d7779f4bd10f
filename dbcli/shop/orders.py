"""Order placement: the ACID showcase.

In one transaction: lock the products' rows (``SELECT ... FOR UPDATE``, in product_id order),
check and decrement their stock, insert the order, its items (price captured) and a pending
payment of the total. Any failure rolls all of it back, and concurrent placements queue on the
row locks, so stock can never be oversold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import ConflictError, InvalidInputError, NotFoundError, UsageError
from dbcli.output import Output
from dbcli.shop.models import Order, OrderItem, Payment
from dbcli.shop.unit_of_work import ShopUnitOfWork

# the values payments_method_check allows (schemas/postgres/0003_orders.sql)
PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "gift_card", "cash_on_delivery")


def parse_item(text: str) -> tuple[int, int]:
    """``PRODUCT_ID:QTY`` (``PRODUCT_ID`` alone means one piece)."""
    pid_text, _, qty_text = text.partition(":")
    try:
        pid, qty = int(pid_text.strip()), int(qty_text.strip()) if qty_text.strip() else 1
    except ValueError:
        raise UsageError(f"--item {text!r}: expected PRODUCT_ID:QTY with whole numbers") from None
    if qty <= 0:
        raise UsageError(f"--item {text!r}: the quantity must be at least 1")
    return pid, qty


def _merge(items: Sequence[tuple[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for pid, qty in items:
        if qty <= 0:
            raise InvalidInputError(f"product {pid}: the quantity must be at least 1")
        merged[pid] = merged.get(pid, 0) + qty  # one line per product (the order_items key)
    return merged


def place_order(uow: ShopUnitOfWork, user_id: int, items: Sequence[tuple[int, int]], *,
                method: str | None = None, address_id: int | None = None) -> Order:
    """Place an order inside ``uow`` (the caller's ``with`` block commits or rolls back).

    Exit codes: unknown user, product or address 6; inactive product or insufficient stock 7.
    """
    if not items:
        raise UsageError("an order needs at least one --item PRODUCT_ID:QTY")
    if method is not None and method not in PAYMENT_METHODS:
        raise UsageError(f"unknown payment method {method!r} (choose from {', '.join(PAYMENT_METHODS)})")
    wanted = _merge(items)
    if not uow.users.exists(user_id):
        raise NotFoundError(f"user {user_id} not found")
    if address_id is not None:
        if uow.users.address(user_id, address_id) is None:
            raise NotFoundError(f"address {address_id} of user {user_id} not found")
    else:
        default = uow.users.default_address(user_id, "shipping")
        address_id = default.address_id if default else None
    products = uow.products.lock(wanted)  # waits here while another placement holds a row
    missing = sorted(set(wanted) - products.keys())
    if missing:
        raise NotFoundError(f"product {', '.join(map(str, missing))} not found")
    for pid, qty in sorted(wanted.items()):
        product = products[pid]
        if not product.active:
            raise ConflictError(f"product {pid} ({product.sku}) is not for sale (inactive)")
        if product.stock < qty:
            raise ConflictError(f"insufficient stock for product {pid} ({product.sku}): "
                                f"{product.stock} available, {qty} requested")
    for pid, qty in sorted(wanted.items()):
        uow.products.change_stock(pid, -qty)
    order = Order(user_id=user_id, shipping_address_id=address_id,
                  items=[OrderItem(product_id=pid, quantity=qty, unit_price=products[pid].price)
                         for pid, qty in sorted(wanted.items())])
    if order.total > 0:  # payments.amount must be positive: a free order has nothing to pay
        order.payments.append(Payment(amount=order.total, method=method))
    return uow.orders.add(order)


def place(cfg: Config, user_id: int, items: Sequence[tuple[int, int]], *, method: str | None = None,
          address_id: int | None = None) -> Order:
    """Place an order in its own unit of work."""
    with ShopUnitOfWork(cfg) as uow:
        return place_order(uow, user_id, items, method=method, address_id=address_id)


def get_order(cfg: Config, order_id: int) -> Order:
    with ShopUnitOfWork(cfg) as uow:
        order = uow.orders.get(order_id)
    if order is None:
        raise NotFoundError(f"order {order_id} not found")
    return order


def summary(order: Order) -> dict[str, Any]:
    """One flat record for output (items and payments summarised)."""
    payment = order.payments[0] if order.payments else None
    return {"order_id": order.order_id, "user_id": order.user_id, "status": order.status,
            "order_date": order.order_date, "items": len(order.items),
            "units": sum(i.quantity for i in order.items), "total": order.total,
            "payment_id": payment.payment_id if payment else None,
            "payment_status": payment.status if payment else None}


def item_rows(order: Order) -> list[dict[str, Any]]:
    return [{"product_id": i.product_id, "quantity": i.quantity, "unit_price": i.unit_price,
             "line_total": i.line_total} for i in order.items]


def show(out: Output, order: Order) -> None:
    """The order for people (summary and lines) or for programs (one JSON object)."""
    if out.fmt == "table":
        out.record(summary(order), title=f"order {order.order_id}")
        out.rows(item_rows(order), ["product_id", "quantity", "unit_price", "line_total"], title="items")
    else:
        out.record({**summary(order), "items": item_rows(order),
                    "payments": [p.__dict__ for p in order.payments]})

