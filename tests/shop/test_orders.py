"""dbcli order place | show: all or nothing, and concurrent placements never oversell."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from dbcli.errors import ConflictError, DbcliError
from tests.fix_tables import Shop


def _state(shop: Shop) -> tuple[Any, ...]:
    return (shop.query("SELECT product_id, stock FROM products ORDER BY 1"),
            shop.scalar("SELECT count(*) FROM orders"), shop.scalar("SELECT count(*) FROM order_items"),
            shop.scalar("SELECT count(*) FROM payments"))


def test_place_order(shop: Shop, cli: Any) -> None:
    result = cli("order", "place", "--user", "1", "--item", "1:2", "--item", "2:3", "--item", "1:1",
                 "--method", "card", "-f", "json")
    assert result.exit_code == 0, result.stderr
    order = result.json()
    assert order["order_id"] == 1 and order["status"] == "pending" and order["total"] == 82.2
    assert order["items"] == [
        {"product_id": 1, "quantity": 3, "unit_price": 19.9, "line_total": 59.7},
        {"product_id": 2, "quantity": 3, "unit_price": 7.5, "line_total": 22.5},
    ]
    assert order["payments"][0]["amount"] == 82.2 and order["payments"][0]["method"] == "card"
    assert result.stderr == "order 1 placed: 2 line(s), total 82.20\n"
    assert shop.query("SELECT product_id, stock FROM products ORDER BY 1") == [(1, 2), (2, 97), (3, 2)]
    # the user's default shipping address was used; the price is captured
    assert shop.scalar("SELECT shipping_address_id FROM orders") == 1
    shop.query("UPDATE products SET price = 99 WHERE product_id = 1 RETURNING 1")
    shown = cli("order", "show", "1", "-f", "json").json()
    assert shown["items"][0]["unit_price"] == 19.9 and shown["total"] == 82.2
    assert shop.scalar("SELECT total FROM order_totals WHERE order_id = 1") == Decimal("82.20")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--user", "1", "--item", "1:2", "--item", "3:3"], 7,
     "insufficient stock for product 3 (CHAIR-1): 2 available, 3 requested"),
    (["--user", "1", "--item", "1:1", "--item", "99:1"], 6, "product 99 not found"),
    (["--user", "42", "--item", "1:1"], 6, "user 42 not found"),
    (["--user", "1", "--item", "1:0"], 2, "--item '1:0': the quantity must be at least 1"),
    (["--user", "1", "--item", "one:1"], 2, "--item 'one:1': expected PRODUCT_ID:QTY with whole numbers"),
    (["--user", "1", "--item", "1:1", "--method", "cheque"], 2,
     "unknown payment method 'cheque' (choose from card, paypal, bank_transfer, gift_card, cash_on_delivery)"),
    (["--user", "2", "--item", "1:1", "--address", "1"], 6, "address 1 of user 2 not found"),
])
def test_failed_placement_changes_nothing(shop: Shop, cli: Any, args: list[str], code: int, message: str) -> None:
    before = _state(shop)
    result = cli("order", "place", *args)
    assert result.exit_code == code
    assert result.stderr == f"Error: {message}\n"
    assert _state(shop) == before


def test_inactive_product_is_refused(shop: Shop, cli: Any) -> None:
    shop.query("UPDATE products SET active = false WHERE product_id = 2 RETURNING 1")
    result = cli("order", "place", "--user", "1", "--item", "2:1")
    assert result.exit_code == 7
    assert result.stderr == "Error: product 2 (MUG-1) is not for sale (inactive)\n"


def test_show_absent_order(shop: Shop, cli: Any) -> None:
    result = cli("order", "show", "5")
    assert result.exit_code == 6 and result.stderr == "Error: order 5 not found\n"


def test_parallel_placements_never_oversell(shop: Shop, shop_cfg: Any) -> None:
    """Eight buyers, each on their own connection, race for the 5 lamps (and the 2 chairs)."""
    from dbcli.shop.orders import place

    buyers = 8
    start = threading.Barrier(buyers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def buy(n: int) -> None:
        items = [(1, 1), (3, 1)] if n % 4 == 0 else [(1, 1)]
        start.wait()
        try:
            place(shop_cfg, 1 + n % 2, items)
            result = "ok"
        except ConflictError as e:
            result = e.message
        except DbcliError as e:  # anything else is a failure of the test
            result = f"unexpected: {e}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == buyers
    assert outcomes.count("ok") == 5, outcomes
    assert all(o == "ok" or o.startswith("insufficient stock for product 1 (LAMP-1): 0 available") for o in outcomes)
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 1") == 0
    sold = shop.scalar("SELECT coalesce(sum(quantity), 0) FROM order_items WHERE product_id = 1")
    assert sold == 5 and shop.scalar("SELECT count(*) FROM orders") == 5
    chairs = shop.scalar("SELECT coalesce(sum(quantity), 0) FROM order_items WHERE product_id = 3")
    assert chairs + shop.scalar("SELECT stock FROM products WHERE product_id = 3") == 2


def test_parallel_subprocesses_never_oversell(shop: Shop) -> None:
    """The same race through the real entry point: separate processes, separate connections."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "dbcli", "order", "place", "--user", "1", "--item", "3:1",
                               "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        p.communicate()
    assert codes == [0, 0, 7]
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 3") == 0
