"""Demo step: place an order, then show that one asking for too much changes nothing."""

from __future__ import annotations

from decimal import Decimal

from dbcli.config.model import Config
from dbcli.errors import ConflictError
from dbcli.output import Output
from dbcli.shop.models import Product, User
from dbcli.shop.orders import place, show
from dbcli.shop.unit_of_work import ShopUnitOfWork


def step(cfg: Config, out: Output) -> None:
    """Place an order, then show that one asking for too much changes nothing."""
    with ShopUnitOfWork(cfg) as uow:
        row = uow.conn.execute("SELECT user_id FROM users ORDER BY user_id LIMIT 1").fetchone()
        user_id = int(row[0]) if row else uow.users.add(User(email="demo@example.com", name="Demo User")).user_id
        stocked = [p for p in uow.products.list(limit=50) if p.stock > 0][:2]
        if len(stocked) < 2:
            stocked = [uow.products.add(Product(sku=f"DEMO-ORDER-{n}", product_name=f"Demo item {n}",
                                                price=Decimal(price), stock=5))
                       for n, price in ((1, "9.90"), (2, "24.50"))]
    assert user_id is not None
    items = [(p.product_id or 0, 1) for p in stocked]
    spec = " ".join(f"--item {pid}:{qty}" for pid, qty in items)
    out.info(f"$ dbcli order place --user {user_id} {spec} --method card")
    order = place(cfg, user_id, items, method="card")
    show(out, order)
    first = stocked[0]
    out.info(f"$ dbcli order place --user {user_id} --item {first.product_id}:100000   # more than in stock")
    try:
        place(cfg, user_id, [(first.product_id or 0, 100000)])
    except ConflictError as e:
        out.info(f"Error: {e.message} (exit {int(e.exit_code)}: nothing was changed)")
