"""dbcli table import | export: COPY in and out, all or nothing, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fix_tables import Shop

KITCHEN_SINK = """
CREATE TABLE sink (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label     text NOT NULL,
    note      text,
    amount    numeric(10,3),
    ratio     double precision,
    flag      boolean,
    tags      text[],
    nums      integer[],
    doc       jsonb,
    blob      bytea,
    day       date,
    at        timestamptz,
    token     uuid
);
INSERT INTO sink (label, note, amount, ratio, flag, tags, nums, doc, blob, day, at, token) VALUES
    ('plain', 'x', 1.5, 0.25, true, '{a,b}', '{1,2}', '{"k": [1, "two", null]}', '\\x00ff', '2024-02-29',
     '2024-05-01 10:00:00.123456+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    ('tricky', E'tab\\there, "quotes", back\\\\slash,\\nnewline', -0.001, -1e-9, false, '{"with space","x,y"}',
     '{}', '"just a string"', '\\x', '0001-01-01', '1970-01-01 00:00:00+00', NULL),
    ('unicode ✓ ünïcødé', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('', '', 0, 'NaN', NULL, '{""}', '{NULL}', '[]', NULL, 'infinity', '-infinity', NULL);
CREATE TABLE sink_copy (LIKE sink INCLUDING ALL);
"""


@pytest.fixture
def sink(shop: Shop) -> Shop:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute(KITCHEN_SINK.encode())
    return shop


def _same(shop: Shop, a: str, b: str) -> bool:
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT count(*) FROM ((TABLE {a} EXCEPT ALL TABLE {b}) UNION ALL "
                    "(TABLE {b} EXCEPT ALL TABLE {a})) d").format(a=sql.Identifier(a), b=sql.Identifier(b))
    with psycopg.connect(shop.conninfo) as conn:
        diff = conn.execute(query).fetchone()
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(b))).fetchone()
    return diff is not None and diff[0] == 0 and rows is not None and rows[0] > 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_export_then_import_reproduces_the_table(sink: Shop, cli: Any, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"sink.{fmt}"
    result = cli("table", "export", "sink", "-o", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and result.stderr == f"exported 4 row(s) of sink to {path}\n"
    result = cli("table", "import", "sink_copy", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "sink_copy", "rows": 4, "inserted": 4, "updated": 0, "unchanged": 0}
    # NULL and the empty string stay apart, in CSV too
    assert _same(sink, "sink", "sink_copy")
    # the identity sequence moved past the imported ids
    sink.query("INSERT INTO sink_copy (label) VALUES ('next') RETURNING 1")
    assert sink.scalar("SELECT max(id) FROM sink_copy") == 5


def test_export_formats_on_stdout(shop: Shop, cli: Any) -> None:
    result = cli("table", "export", "products", "--where", "price<100", "--columns", "sku,price,stock",
                 "--order-by", "sku")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "sku,price,stock\nLAMP-1,19.90,5\nMUG-1,7.50,100\n"
    result = cli("table", "export", "products", "--where", "sku=MUG-1", "--columns", "sku,price", "--format", "jsonl")
    assert result.stdout == '{"sku":"MUG-1","price":7.50}\n'
    result = cli("table", "export", "products", "--columns", "sku", "--order-by", "sku", "--format", "json")
    assert json.loads(result.stdout) == [{"sku": "CHAIR-1"}, {"sku": "LAMP-1"}, {"sku": "MUG-1"}]
    result = cli("table", "export", "products", "--where", "price<0", "--format", "json")
    assert result.stdout == "[]\n"
    result = cli("table", "export", "products", "--format", "table")
    assert result.exit_code == 2


def test_export_failure_leaves_no_file(shop: Shop, cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    result = cli("table", "export", "products", "--where", "nope=1", "-o", str(target))
    assert result.exit_code == 5
    assert target.read_text() == "old\n" and list(tmp_path.glob(".out.csv.*")) == []


def test_export_to_a_directory_is_invalid_input(shop: Shop, cli: Any, tmp_path: Path) -> None:
    result = cli("table", "export", "products", "-o", str(tmp_path))
    assert result.exit_code == 5
    assert result.stderr == f"Error: cannot write {tmp_path}: it is a directory\n"
    assert list(tmp_path.parent.glob(f".{tmp_path.name}.*")) == []


def test_csv_with_bad_row_at_line_500_stores_nothing(shop: Shop, cli: Any, tmp_path: Path) -> None:
    lines = ["sku,product_name,price,stock"]
    lines += [f"SKU-{i},Item {i},{i}.99,{i}" for i in range(2, 600)]
    lines[499] = "SKU-BAD,Bad item,abc,1"  # file line 500
    path = tmp_path / "products.csv"
    path.write_text("\n".join(lines) + "\n")
    result = cli("table", "import", "products", str(path))
    assert result.exit_code == 5
    assert result.stderr == "Error: line 500, column price: invalid input for numeric(12,2): 'abc'\n"
    assert shop.scalar("SELECT count(*) FROM products") == 3


def test_csv_empty_cells(shop: Shop, cli: Any) -> None:
    # an empty cell is NULL, except in a NOT NULL text column, where it can only be ''
    body = "sku,product_name,price,description\nE-1,,1,\n"
    result = cli("table", "import", "products", "-", input=body)
    assert result.exit_code == 0, result.stderr
    assert shop.query("SELECT product_name, description FROM products WHERE sku = 'E-1'") == [("", None)]
    result = cli("table", "import", "products", "-", input="sku,product_name,price\nE-2,x,\n")
    assert result.exit_code == 5
    assert result.stderr == "Error: line 2, column price: null value in a not-null column\n"


def test_server_side_errors_are_mapped_to_the_line(shop: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"sku": "N-1", "product_name": "n", "price": 1}\n\n'
                    '{"sku": "MUG-1", "product_name": "dup", "price": 2}\n')
    result = cli("table", "import", "products", str(path))
    assert result.exit_code == 7
    assert result.stderr.startswith('Error: line 3: duplicate key value violates unique constraint "products_sku_key"')
    path = tmp_path / "date.csv"
    path.write_text("user_id,kind,line1,city,country,created_at\n1,billing,x,y,US,2024-01-01\n"
                    "1,billing,x,y,US,not a date\n")
    result = cli("table", "import", "addresses", str(path))
    assert result.exit_code == 5
    assert result.stderr == ('Error: line 3, column created_at: invalid input syntax for type timestamp with '
                             'time zone: "not a date"\n')
    assert shop.scalar("SELECT count(*) FROM products") == 3


def test_import_json_records_must_share_fields(shop: Shop, cli: Any) -> None:
    body = '{"sku": "A", "product_name": "a", "price": 1}\n{"sku": "B", "price": 2, "stock": 1}\n'
    result = cli("table", "import", "products", "-", "--input-format", "jsonl", input=body)
    assert result.exit_code == 5
    assert result.stderr == ("Error: line 2: the fields differ from the first record's "
                             "(missing product_name; extra stock)\n")


def test_import_not_null_checked_client_side(shop: Shop, cli: Any) -> None:
    result = cli("table", "import", "products", "-", input='[{"sku": "A", "product_name": null, "price": 1}]')
    assert result.exit_code == 5
    assert result.stderr == "Error: item 1, column product_name: null value in a not-null column\n"


def test_upsert_on_primary_key_and_named_unique_key(shop: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("sku,product_name,price,stock\nLAMP-1,Desk lamp,21.00,6\nNEW-1,New thing,3.00,1\n")
    result = cli("table", "import", "products", str(path), "--upsert", "--conflict-key", "products_sku_key",
                 "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "products", "rows": 2, "inserted": 1, "updated": 1, "unchanged": 0}
    assert shop.query("SELECT product_id, price::text, stock FROM products WHERE sku = 'LAMP-1'") == [(1, "21.00", 6)]
    result = cli("table", "import", "products", str(path), "--upsert", "--conflict-key", "sku", "-f", "json")
    assert result.json() == {"table": "products", "rows": 2, "inserted": 0, "updated": 0, "unchanged": 2}

    by_id = tmp_path / "by_id.jsonl"
    by_id.write_text('{"product_id": 2, "sku": "MUG-1", "product_name": "Big mug", "price": 8}\n'
                     '{"product_id": 10, "sku": "TEN", "product_name": "Ten", "price": 10}\n')
    result = cli("table", "import", "products", str(by_id), "--upsert", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "products", "rows": 2, "inserted": 1, "updated": 1, "unchanged": 0}
    assert shop.scalar("SELECT product_name FROM products WHERE product_id = 2") == "Big mug"
    # explicit ids moved the identity sequence
    assert cli("table", "insert", "products", "-f", "json", "--data",
               '{"sku": "AFTER", "product_name": "a", "price": 1}').json()[0]["product_id"] == 11


def test_upsert_reports_unchanged_rows_and_leaves_them_alone(shop: Shop, cli: Any, tmp_path: Path) -> None:
    # issue 15: a repeated upsert reported every row as updated (collections said "unchanged")
    shop.execute("CREATE TABLE odd (id int PRIMARY KEY, doc json, pos point, tags text[], n numeric, at timestamptz);"
                 "INSERT INTO odd VALUES (1, '{\"a\": 1}', '(1,2)', '{x}', 1.5, '2024-01-01T00:00:00Z'),"
                 "(2, '[]', '(0,0)', NULL, NULL, NULL)")
    path = tmp_path / "odd.jsonl"
    path.write_text('{"id": 1, "doc": {"a": 1}, "pos": "(1,2)", "tags": ["x"], "n": 1.5, '
                    '"at": "2024-01-01T00:00:00Z"}\n'
                    '{"id": 2, "doc": [], "pos": "(0,0)", "tags": null, "n": null, "at": null}\n'
                    '{"id": 3, "doc": null, "pos": null, "tags": [], "n": 0, "at": null}\n')
    versions = shop.query("SELECT id, xmin::text FROM odd ORDER BY id")
    result = cli("table", "import", "odd", str(path), "--upsert", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "odd", "rows": 3, "inserted": 1, "updated": 0, "unchanged": 2}
    assert shop.query("SELECT id, xmin::text FROM odd WHERE id < 3 ORDER BY id") == versions  # not rewritten
    path.write_text('{"id": 1, "pos": "(1,3)", "doc": {"a": 1}}\n{"id": 2, "pos": "(0,0)", "doc": {}}\n'
                    '{"id": 3, "pos": null, "doc": null}\n')
    result = cli("table", "import", "odd", str(path), "--upsert", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "odd", "rows": 3, "inserted": 0, "updated": 2, "unchanged": 1}
    assert shop.query("SELECT pos::text, (SELECT doc::text FROM odd WHERE id = 2) FROM odd WHERE id = 1") == [
        ("(1,3)", "{}")]


def test_upsert_errors(shop: Shop, cli: Any) -> None:
    body = "sku,product_name,price\nQ,q,1\n"
    result = cli("table", "import", "products", "-", "--upsert", input=body)
    assert result.exit_code == 5
    assert result.stderr == "Error: --upsert needs the key column(s) product_id in the input\n"
    result = cli("table", "import", "products", "-", "--upsert", "--conflict-key", "products_sku", input=body)
    assert result.exit_code == 5
    assert result.stderr == "Error: unknown unique key 'products_sku' of products (closest match: products_sku_key)\n"
    dup = "sku,product_name,price\nQ,q,1\nQ,q,2\n"
    result = cli("table", "import", "products", "-", "--upsert", "--conflict-key", "sku", input=dup)
    assert result.exit_code == 5 and "two rows with the same key" in result.stderr
    assert shop.scalar("SELECT count(*) FROM products") == 3


def test_import_into_a_view_or_unknown_table(shop: Shop, cli: Any) -> None:
    result = cli("table", "import", "order_totals", "-", input="order_id\n1\n")
    assert result.exit_code == 5 and result.stderr == "Error: order_totals is a view: import needs a table\n"
    result = cli("table", "import", "prodcts", "-", input="a\n1\n")
    assert result.exit_code == 5
    assert result.stderr == "Error: unknown table 'prodcts' (closest match: products)\n"
    result = cli("table", "import", "products", "missing.csv")
    assert result.exit_code == 6


def test_library_import_and_export(shop_cfg: Any, tmp_path: Path) -> None:
    import io

    from dbcli.postgres.copy_export import export_table
    from dbcli.postgres.copy_import import import_records
    from dbcli.postgres.uow import UnitOfWork

    with UnitOfWork(shop_cfg) as uow:
        result = import_records(uow.table("categories"), iter([(1, {"name": "Lighting"}), (2, {"name": "Kitchen"})]))
        assert (result.rows, result.inserted) == (2, 2)
        buf = io.BytesIO()
        assert export_table(uow, "categories", buf, fmt="jsonl", columns=["name"], order_by=["name"]) == 2
    assert buf.getvalue() == b'{"name":"Kitchen"}\n{"name":"Lighting"}\n'


def test_export_into_a_missing_directory_is_invalid_input(shop: Shop, cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "typo" / "out.csv"
    result = cli("table", "export", "products", "-o", str(target))
    assert result.exit_code == 5
    assert result.stderr == f"Error: cannot write {target}: no directory {target.parent}\n"
    assert not target.parent.exists()  # like a shell redirection: no directory tree made up
