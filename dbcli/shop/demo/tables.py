"""The demo's CRUD round trip on a table, narrated as the commands a user would type."""

from __future__ import annotations

from dbcli.config.model import Config
from dbcli.output import Output
from dbcli.postgres.tables import Filter
from dbcli.postgres.uow import UnitOfWork

SKU = "DEMO-CRUD-1"
COLUMNS = ["product_id", "sku", "product_name", "price", "stock"]


def step(cfg: Config, out: Output) -> None:
    """A CRUD round trip on ``products``: insert, get, find, update, delete."""
    with UnitOfWork(cfg) as uow:
        gw = uow.table("products")
        gw.delete([Filter("sku", "=", SKU)])
        (row,) = gw.insert([(1, {"sku": SKU, "product_name": "Demo lamp", "price": "19.90", "stock": 3})])
        pid = str(row["product_id"])
        out.info(f"$ dbcli table insert products --data '{{\"sku\": \"{SKU}\", \"product_name\": \"Demo lamp\", "
                 f"\"price\": 19.90, \"stock\": 3}}'")
        out.rows([row], COLUMNS)
        out.info(f"$ dbcli table update products --where product_id={pid} --set price=17.50")
        gw.update([Filter("product_id", "=", pid)], {"price": "17.50"})
        out.info(f"$ dbcli table get products {pid}")
        out.rows([gw.get(pid) or {}], COLUMNS)
        out.info("$ dbcli table find products --where 'product_name~%lamp%' --order-by price:desc --limit 3")
        names, rows = gw.find([Filter("product_name", "~", "%lamp%")], order_by=["price:desc"], limit=3,
                              columns=["product_id", "sku", "product_name", "price"])
        out.rows(list(rows), names)
        out.info(f"$ dbcli table delete products --where sku={SKU}")
        deleted = gw.delete([Filter("sku", "=", SKU)])
        out.info(f"deleted {deleted} row(s)")
