"""dbcli table count: the exact count, with table find's --where parser and catalog checks (issue 16, item 7)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fix_tables import Shop


def test_count_all_and_where(shop: Shop, cli: Any) -> None:
    res = cli("table", "count", "products", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == {"table": "products", "count": 3}
    res = cli("table", "count", "products", "--where", "price>=10", "--where", "product_name~%lamp%", "-f", "json")
    assert res.json() == {"table": "products", "count": 1}
    res = cli("table", "count", "products", "--where", "sku=NOPE", "-f", "csv")
    assert res.stdout.splitlines() == ["table,count", "products,0"]
    res = cli("table", "count", "public.users", "--where", "tier is not null", "-f", "jsonl")
    assert res.json() == {"table": "users", "count": 2}


def test_count_is_exact_not_an_estimate(shop: Shop, cli: Any) -> None:
    shop.execute("INSERT INTO products (sku, product_name, price) SELECT 'S-' || g, 'x', 1 "
                 "FROM generate_series(1, 500) g")
    res = cli("table", "count", "products", "-f", "json")
    assert res.json()["count"] == 503


@pytest.mark.parametrize("args, code, message", [
    (["nope"], 5, "unknown table"),
    (["products", "--where", "nope=1"], 5, "nope"),
    (["products", "--where", "price>abc"], 5, "--where price"),
    (["products", "--where", "price"], 2, "expected COL=VALUE"),
])
def test_count_bad_input(shop: Shop, cli: Any, args: list[str], code: int, message: str) -> None:
    res = cli("table", "count", *args)
    assert res.exit_code == code, res.stderr
    assert message in res.stderr and res.stdout == ""


def test_count_injection_changes_nothing(shop: Shop, cli: Any) -> None:
    res = cli("table", "count", "products", "--where", "sku=x'; DROP TABLE products; --", "-f", "json")
    assert res.json() == {"table": "products", "count": 0}
    res = cli("table", "count", 'products"; DROP TABLE users; --')
    assert res.exit_code == 5
    assert shop.scalar("SELECT count(*) FROM users") == 2 and shop.scalar("SELECT count(*) FROM products") == 3
