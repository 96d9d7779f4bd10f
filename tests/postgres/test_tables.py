"""dbcli table list | describe | get | find | insert | update | delete, and the where parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dbcli.errors import UsageError
from dbcli.postgres.tables import Filter, parse_order, parse_where
from tests.fix_tables import Shop


def test_list_and_describe(shop: Shop, cli: Any) -> None:
    result = cli("table", "list", "-f", "json")
    assert result.exit_code == 0, result.stderr
    kinds = {r["name"]: r["kind"] for r in result.json()}
    assert kinds["products"] == "table" and kinds["order_totals"] == "view"

    result = cli("table", "describe", "products", "-f", "json")
    assert result.exit_code == 0, result.stderr
    cols = {r["column"]: r for r in result.json()}
    assert cols["product_id"]["key"] == "PK" and cols["product_id"]["identity"] == "always"
    assert cols["sku"]["key"] == "UQ products_sku_key"
    assert cols["price"]["type"] == "numeric(12,2)" and cols["price"]["nullable"] is False
    assert cols["stock"]["default"] == "0"


def test_insert_prints_stored_rows_with_defaults(shop: Shop, cli: Any) -> None:
    result = cli("table", "insert", "products", "-f", "json", "--data",
                 '{"sku": "PEN-1", "product_name": "Pen", "price": 1.20}')
    assert result.exit_code == 0, result.stderr
    (row,) = result.json()
    assert row["product_id"] == 4 and row["stock"] == 0 and row["active"] is True and row["price"] == 1.2
    assert result.stderr == "inserted 1 row(s) into products\n"
    got = cli("table", "get", "products", "4", "-f", "json")
    assert got.exit_code == 0 and got.json()["sku"] == "PEN-1"


@pytest.mark.parametrize(("suffix", "body"), [
    ("csv", "sku,product_name,price,stock,description\nA-1,Apple,0.50,3,\nB-1,Banana,0.25,7,yellow\n"),
    ("jsonl", '{"sku": "A-1", "product_name": "Apple", "price": 0.5, "stock": 3}\n'
              '{"sku": "B-1", "product_name": "Banana", "price": "0.25", "stock": 7, "description": "yellow"}\n'),
    ("json", '[{"sku": "A-1", "product_name": "Apple", "price": 0.5, "stock": 3},'
             ' {"sku": "B-1", "product_name": "Banana", "price": 0.25, "stock": "7", "description": "yellow"}]'),
])
def test_insert_from_file_and_stdin(shop: Shop, cli: Any, tmp_path: Path, suffix: str, body: str) -> None:
    path = tmp_path / f"rows.{suffix}"
    path.write_text(body)
    result = cli("table", "insert", "products", "--file", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert [r["sku"] for r in result.json()] == ["A-1", "B-1"]
    rows = shop.query("SELECT sku, price::text, stock, description FROM products WHERE sku IN ('A-1', 'B-1') "
                      "ORDER BY sku")
    assert rows == [("A-1", "0.50", 3, None), ("B-1", "0.25", 7, "yellow")]
    shop.query("DELETE FROM products WHERE sku IN ('A-1', 'B-1') RETURNING 1")
    result = cli("table", "insert", "products", "-f", "json", input=body)
    assert result.exit_code == 0, result.stderr
    assert len(result.json()) == 2


def test_insert_bad_value_names_row_and_column_and_stores_nothing(shop: Shop, cli: Any) -> None:
    result = cli("table", "insert", "products", "--data",
                 '[{"sku": "OK-1", "product_name": "ok", "price": 1}, {"sku": "X", "product_name": "x", "price": 2},'
                 ' {"sku": "Y", "product_name": "y", "price": "abc"}]')
    assert result.exit_code == 5
    assert result.stderr == "Error: row 3, column price: invalid input for numeric(12,2): 'abc'\n"
    assert shop.scalar("SELECT count(*) FROM products") == 3


def test_insert_constraint_violation_names_row(shop: Shop, cli: Any) -> None:
    result = cli("table", "insert", "products", "--data",
                 '[{"sku": "OK-1", "product_name": "ok", "price": 1}, {"sku": "LAMP-1", "product_name": "x", '
                 '"price": 2}]')
    assert result.exit_code == 7
    assert result.stderr.startswith('Error: row 2: duplicate key value violates unique constraint "products_sku_key"')
    assert shop.scalar("SELECT count(*) FROM products") == 3


def test_insert_explicit_identity_uses_overriding_and_moves_sequence(shop: Shop, cli: Any) -> None:
    result = cli("table", "insert", "users", "-f", "json", "--data",
                 '{"user_id": 50, "email": "z@example.com", "name": "Zed"}')
    assert result.exit_code == 0, result.stderr
    result = cli("table", "insert", "users", "-f", "json", "--data", '{"email": "y@example.com", "name": "Y"}')
    assert result.exit_code == 0, result.stderr
    assert result.json()[0]["user_id"] == 51


def test_insert_unknown_or_generated_column(shop: Shop, cli: Any) -> None:
    result = cli("table", "insert", "products", "--data", '{"sku": "A", "product_nam": "x", "price": 1}')
    assert result.exit_code == 5
    assert result.stderr == "Error: unknown column 'product_nam' of products (closest match: product_name)\n"
    result = cli("table", "insert", "products", "--data", "{not json")
    assert result.exit_code == 5 and result.stderr.startswith("Error: --data: invalid JSON")


def test_get_absent_and_composite_keys(shop: Shop, cli: Any) -> None:
    result = cli("table", "get", "users", "99")
    assert result.exit_code == 6
    assert result.stderr == "Error: no row of users with user_id = 99\n"
    shop.query("INSERT INTO orders (user_id) VALUES (1) RETURNING 1")
    shop.query("INSERT INTO order_items VALUES (1, 2, 3, 7.50) RETURNING 1")
    result = cli("table", "get", "order_items", "1,2", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"order_id": 1, "product_id": 2, "quantity": 3, "unit_price": 7.5}
    result = cli("table", "get", "order_items", "1")
    assert result.exit_code == 5
    assert "2-column primary key (order_id, product_id)" in result.stderr
    result = cli("table", "get", "order_totals", "1")
    assert result.exit_code == 5 and "has no primary key" in result.stderr
    result = cli("table", "get", "users", "abc")  # named as the key it is, not as a --where the user never gave
    assert result.exit_code == 5
    assert result.stderr == "Error: primary key user_id: invalid input for bigint: 'abc'\n"


@pytest.mark.parametrize("command", [["find", "categories", "-f", "jsonl"], ["export", "categories"]])
def test_reader_closing_the_pipe_ends_quietly(shop: Shop, command: list[str]) -> None:
    # dbcli table find ... | head -1: exit 141 (output cut off, issue 15), nothing on stderr, and no
    # hang (the open stream used to hold the connection lock that the rollback then waited for)
    shop.execute("INSERT INTO categories (name) SELECT 'c' || g FROM generate_series(1, 100000) g")
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "table", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (141, b"")


def test_injected_table_name_is_refused_and_table_intact(shop: Shop, cli: Any) -> None:
    result = cli("table", "find", "users; drop table users")
    assert result.exit_code == 5
    assert result.stderr == "Error: unknown table 'users; drop table users' (closest match: users)\n"
    assert shop.scalar("SELECT count(*) FROM users") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--where", "user_id=1 or 1=1"], "--where user_id: invalid input for bigint: '1 or 1=1'"),
    (["--where", "name = 'x'; drop table users; --=1"], None),
    (["--where", "email; drop table users=1"], "unknown column 'email; drop table users' of users"),
    (["--columns", "name,(select 1)"], "unknown column '(select 1)' of users"),
    (["--order-by", "name; drop table users"], "unknown column 'name; drop table users' of users"),
])
def test_injected_where_column_or_order_is_refused(shop: Shop, cli: Any, args: list[str],
                                                   message: str | None) -> None:
    result = cli("table", "find", "users", *args, "-f", "json")
    if message is None:  # a value is only ever a value: no row has that name
        assert result.exit_code == 0 and result.json() == []
    else:
        assert result.exit_code == 5
        assert result.stderr.startswith(f"Error: {message}")
    assert shop.scalar("SELECT count(*) FROM users") == 2


@pytest.mark.parametrize(("where", "skus"), [
    (["sku=MUG-1"], ["MUG-1"]),
    (["sku!=MUG-1"], ["LAMP-1", "CHAIR-1"]),
    (["price<19.90"], ["MUG-1"]),
    (["price<=19.90"], ["LAMP-1", "MUG-1"]),
    (["price>19.90"], ["CHAIR-1"]),
    (["price >= 19.9", "stock>2"], ["LAMP-1"]),
    (["product_name~%LAMP%"], ["LAMP-1"]),
    (["description is null"], ["LAMP-1", "MUG-1", "CHAIR-1"]),
    (["description is not null"], []),
    (["created_at>2000-01-01"], ["LAMP-1", "MUG-1", "CHAIR-1"]),
])
def test_find_operators(shop: Shop, cli: Any, where: list[str], skus: list[str]) -> None:
    args = [a for w in where for a in ("--where", w)]
    result = cli("table", "find", "products", *args, "--order-by", "product_id", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert [r["sku"] for r in result.json()] == skus


def test_find_order_limit_columns_and_formats(shop: Shop, cli: Any) -> None:
    result = cli("table", "find", "products", "--order-by", "price:desc", "--limit", "2", "--columns", "sku,price",
                 "-f", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "sku,price\nCHAIR-1,149.00\nLAMP-1,19.90\n"
    result = cli("table", "find", "products", "--where", "price<0", "--columns", "sku", "-f", "csv")
    assert result.stdout == "sku\n"
    result = cli("table", "find", "products", "--where", "price=cheap")
    assert result.exit_code == 5
    assert result.stderr == "Error: --where price: invalid input for numeric(12,2): 'cheap'\n"


def test_update_and_delete_without_where_are_refused(shop: Shop, cli: Any) -> None:
    result = cli("table", "update", "products", "--set", "stock=0")
    assert result.exit_code == 7
    assert result.stderr == ("Error: refusing to update every row of products without --where "
                             "(add --all to mean it)\n")
    result = cli("table", "delete", "products")
    assert result.exit_code == 7
    assert shop.scalar("SELECT sum(stock) FROM products") == 107
    result = cli("table", "update", "products", "--all", "--set", "stock=1", "-f", "json")
    assert result.exit_code == 0 and result.json() == {"table": "products", "updated": 3}


def test_dry_run_changes_nothing(shop: Shop, cli: Any) -> None:
    result = cli("table", "update", "products", "--where", "price<100", "--set", "stock=0", "--dry-run", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "products", "would_update": 2, "dry_run": True}
    assert "nothing changed" in result.stderr
    result = cli("table", "delete", "products", "--all", "--dry-run", "-f", "json")
    assert result.json() == {"table": "products", "would_delete": 3, "dry_run": True}
    assert shop.scalar("SELECT sum(stock) FROM products") == 107


def test_update_set_values_and_nulls(shop: Shop, cli: Any) -> None:
    result = cli("table", "update", "products", "--where", "sku=LAMP-1", "--set", "price=17.5", "--set",
                 "description=bright", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "products", "updated": 1}
    assert shop.query("SELECT price::text, description FROM products WHERE sku = 'LAMP-1'") == [("17.50", "bright")]
    result = cli("table", "update", "products", "--where", "sku=LAMP-1", "--set-null", "description")
    assert result.exit_code == 0
    assert shop.scalar("SELECT description FROM products WHERE sku = 'LAMP-1'") is None
    result = cli("table", "update", "products", "--where", "sku=LAMP-1", "--set", "stock=many")
    assert result.exit_code == 5 and result.stderr == "Error: --set stock: invalid input for integer: 'many'\n"
    result = cli("table", "update", "products", "--where", "sku=LAMP-1", "--set-null", "price")
    assert result.exit_code == 5 and result.stderr == "Error: --set price: null value in a not-null column\n"
    result = cli("table", "update", "products", "--where", "sku=LAMP-1", "--set", "product_id=9")
    assert result.exit_code == 5 and "identity column" in result.stderr


def test_delete_and_fk_violation(shop: Shop, cli: Any) -> None:
    shop.query("INSERT INTO orders (user_id) VALUES (1) RETURNING 1")
    result = cli("table", "delete", "users", "--where", "user_id=1")
    assert result.exit_code == 7
    assert result.stderr.startswith("Error: cannot delete from users: rows are still referenced from table orders "
                                    "(constraint orders_user_id_fkey)")
    result = cli("table", "delete", "users", "--where", "user_id=2", "-f", "json")
    assert result.exit_code == 0 and result.json() == {"table": "users", "deleted": 1}
    assert shop.scalar("SELECT count(*) FROM users") == 1


def test_writes_bump_the_report_cache_versions(shop: Shop, cli: Any, shop_cfg: Any) -> None:
    from dbcli.cache.versions import open_backend

    def version() -> int:
        backend = open_backend(shop_cfg)
        try:
            return backend.versions(["postgres:products"]).get("postgres:products", 0)
        finally:
            backend.close()

    before = version()
    assert cli("table", "update", "products", "--where", "sku=MUG-1", "--set", "stock=9").exit_code == 0
    assert version() > before
    middle = version()
    assert cli("table", "update", "products", "--where", "sku=MUG-1", "--set", "stock=9", "--dry-run").exit_code == 0
    assert version() == middle


def test_encrypted_columns(shop: Shop, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from dbcli.encryption.fields import generate_key

    cfg = yaml.safe_load(shop.config.read_text())
    cfg["encryption"] = {"key": "${DBCLI_DATA_KEY:-}", "columns": {"user_profiles": ["phone", "date_of_birth"]}}
    shop.config.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("DBCLI_DATA_KEY", generate_key())
    result = cli("table", "insert", "user_profiles", "-f", "json", "--data",
                 '{"user_id": 1, "phone": "+1 555 0100", "date_of_birth": "1990-04-01"}')
    assert result.exit_code == 0, result.stderr
    assert result.json()[0]["phone"] == "+1 555 0100"
    raw = shop.query("SELECT phone, date_of_birth FROM user_profiles")[0]
    assert all(v.startswith("enc:v1:") for v in raw) and "555" not in raw[0]
    assert cli("table", "get", "user_profiles", "1", "-f", "json").json()["date_of_birth"] == "1990-04-01"
    assert cli("table", "update", "user_profiles", "--where", "user_id=1", "--set", "phone=+1 555 0199").exit_code == 0
    assert "0199" not in shop.scalar("SELECT phone FROM user_profiles")
    exported = cli("table", "export", "user_profiles", "--format", "jsonl")
    assert json.loads(exported.stdout)["phone"] == "+1 555 0199"
    result = cli("table", "find", "user_profiles", "--where", "phone=+1 555 0199")
    assert result.exit_code == 5 and "is encrypted: it cannot be filtered on" in result.stderr

    monkeypatch.setenv("DBCLI_DATA_KEY", "")
    result = cli("table", "find", "user_profiles", "-f", "json")
    assert result.exit_code == 0 and result.json()[0]["phone"] == "***encrypted***"
    result = cli("table", "insert", "user_profiles", "--data", '{"user_id": 2, "phone": "1"}')
    assert result.exit_code == 3
    assert shop.scalar("SELECT count(*) FROM user_profiles") == 1


# ---- the parsers ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("a=1", Filter("a", "=", "1")),
    ("a = x y ", Filter("a", "=", "x y")),
    ("a!=1", Filter("a", "!=", "1")),
    ("a<=1", Filter("a", "<=", "1")),
    ("a>=1", Filter("a", ">=", "1")),
    ("a<1", Filter("a", "<", "1")),
    ("a>1", Filter("a", ">", "1")),
    ("a~%x%", Filter("a", "~", "%x%")),
    ("a=b=c", Filter("a", "=", "b=c")),
    ("a=", Filter("a", "=", "")),
    ("a IS NULL", Filter("a", "is null")),
    ("a is not null", Filter("a", "is not null")),
])
def test_parse_where(text: str, expected: Filter) -> None:
    assert parse_where(text) == expected


@pytest.mark.parametrize("text", ["abc", "=1", "a!1"])
def test_parse_where_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_where(text)


def test_parse_order() -> None:
    assert parse_order("price:desc") == ("price", True)
    assert parse_order("price") == ("price", False)
    assert parse_order("price:ASC") == ("price", False)
