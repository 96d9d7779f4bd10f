"""Export at COPY speed (issue 19 item 1): table export's CSV options and output, and dbcli sql's
CSV through COPY (its forms: tests/postgres/test_sql_stream.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fix_tables import Shop
from tests.postgres.test_table_io import KITCHEN_SINK


@pytest.fixture
def sink(shop: Shop) -> Shop:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute(KITCHEN_SINK.encode())
    return shop


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def test_csv_options(shop: Shop, cli: Any) -> None:
    base = ["table", "export", "products", "--columns", "sku,product_name,description", "--order-by", "sku",
            "--where", "product_id<=2"]
    plain = ok(cli(*base))
    assert plain.splitlines()[0] == "sku,product_name,description"
    semi = ok(cli(*base, "--delimiter", ";", "--null", "NA", "--no-header"))
    assert semi.count(";") == plain.count(",") - 2 and "NA" not in plain
    assert ok(cli(*base, "--format", "tsv")).splitlines()[0] == "sku\tproduct_name\tdescription"
    quoted = ok(cli("table", "export", "products", "--columns", "sku,product_name", "--where", "sku=LAMP-1",
                     "--quote", "'", "--delimiter", " "))
    assert quoted.splitlines()[1] == "LAMP-1 'Desk lamp'"


def test_tsv_from_the_suffix_and_a_latin1_file(shop: Shop, cli: Any, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute("UPDATE products SET product_name = 'Lampe Ü' WHERE sku = 'LAMP-1'")
    target = tmp_path / "p.tsv"
    ok(cli("table", "export", "products", "--columns", "sku,product_name", "--where", "sku=LAMP-1",
            "-o", str(target), "--encoding", "latin1"))
    assert target.read_bytes() == "sku\tproduct_name\nLAMP-1\tLampe Ü\n".encode("latin-1")
    # and back in: the round trip of the options
    with psycopg.connect(shop.conninfo) as conn:
        conn.execute("CREATE TABLE names (sku text, product_name text)")
    ok(cli("table", "import", "names", str(target), "--encoding", "latin1"))
    assert "Lampe Ü" in ok(cli("table", "export", "names"))


def test_a_character_the_encoding_lacks_fails_without_a_file(shop: Shop, cli: Any, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute("UPDATE products SET product_name = 'Lamp ✓' WHERE sku = 'LAMP-1'")
    target = tmp_path / "p.csv"
    result = cli("table", "export", "products", "-o", str(target), "--encoding", "latin1")
    assert result.exit_code == 5 and result.stderr.count("\n") == 1 and not target.exists(), result.stderr


@pytest.mark.parametrize("args,message", [
    (["--format", "jsonl", "--null", "NA"], "--null applies to csv and tsv only, not jsonl"),
    (["--format", "json", "--encoding", "latin1"], "--encoding applies to csv and tsv only, not json (JSON is UTF-8)"),
    (["--format", "json", "--no-header"], "--no-header applies to csv and tsv only"),
    (["--quote", "ab"], "--quote must be one character"),
    (["--delimiter", "\n"], "--delimiter cannot be a line break"),
    (["--format", "tsv", "--delimiter", ","], "--delimiter cannot change tsv's tab"),
    (["--encoding", "utf-16"], "PostgreSQL has no such client encoding"),
])
def test_export_options_that_make_no_sense(shop: Shop, cli: Any, tmp_path: Path, args: list[str],
                                           message: str) -> None:
    target = tmp_path / "out"
    result = cli("table", "export", "products", "-o", str(target), *args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not target.exists()


def test_json_array_framing(shop: Shop, cli: Any) -> None:
    assert ok(cli("table", "export", "products", "--where", "price<0", "--format", "json")) == "[]\n"
    one = ok(cli("table", "export", "products", "--columns", "sku", "--where", "sku=MUG-1", "--format", "json"))
    assert one == '[\n{"sku":"MUG-1"}\n]\n'
    many = ok(cli("table", "export", "products", "--columns", "sku", "--order-by", "sku", "--format", "json"))
    assert json.loads(many) == [{"sku": "CHAIR-1"}, {"sku": "LAMP-1"}, {"sku": "MUG-1"}]
    assert many.count("\n") == 5


def test_copy_export_equals_the_row_path(sink: Shop, shop_cfg: Any) -> None:
    """jsonl/json through row_to_json give what they gave before: the chunked COPY reader changed
    nothing (json and jsonb compacted, numbers exact)."""
    import io
    from decimal import Decimal

    from psycopg import sql

    from dbcli.output import to_json
    from dbcli.postgres import copy_export
    from dbcli.postgres.csv_options import CsvOptions
    from dbcli.postgres.uow import UnitOfWork

    with UnitOfWork(shop_cfg) as uow:
        gw = uow.table("sink")
        for fmt in ("jsonl", "json"):
            copied = io.BytesIO()
            copy_export.export_table(uow, "sink", copied, fmt=fmt, order_by=["id"])
            # the old reader: psycopg's Copy iterator, one row per chunk
            _, select, params = gw.select_sql((), order_by=["id"])
            statement = sql.SQL("COPY (SELECT row_to_json(r) FROM ({}) r) TO STDOUT (FORMAT csv, QUOTE {}, "
                                "DELIMITER {})").format(select, sql.Literal("\x01"), sql.Literal("\x02"))
            with gw.conn.cursor() as cur, cur.copy(statement, params or None) as copy:
                lines = [line for chunk in copy for line in bytes(chunk).split(b"\n") if line]
            compact = [to_json(json.loads(line, parse_float=Decimal)).encode() for line in lines]
            expected = b"".join(c + b"\n" for c in compact) if fmt == "jsonl" else \
                b"[\n" + b",\n".join(compact) + b"\n]\n"
            assert copied.getvalue() == expected
        rows = io.BytesIO()
        assert copy_export.export_table(uow, "sink", rows, fmt="csv", options=CsvOptions(null="NULL")) == 4
        assert b",NULL," in rows.getvalue()


def test_sql_csv_cli_with_params_and_read_only(shop: Shop, cli: Any) -> None:
    query = "select product_id, sku, price from products where price >= %(min)s order by product_id"
    assert ok(cli("sql", query, "--param", "min=10", "-f", "csv")).splitlines() == [
        "product_id,sku,price", "1,LAMP-1,19.90", "3,CHAIR-1,149.00"]
    # injection through --param is a value, not SQL (merged client-side with psycopg's quoting)
    result = cli("sql", "select sku, 1 as one from products where sku = %(s)s", "--param", "s=x' or '1'='1",
                 "-f", "csv")
    assert ok(result) == "sku,one\n"
    result = cli("sql", "with d as (delete from products returning *) select product_id, sku from d", "-f", "csv")
    assert result.exit_code == 7 and result.stdout == "", result.stderr
    assert ok(cli("sql", "select count(*) as n, 1 as one from products", "-f", "csv")) == "n,one\n3,1\n"
    result = cli("sql", "select 1/0 as x, 2 as y", "-f", "csv")
    assert result.exit_code != 0 and "division by zero" in result.stderr


def _within(seconds: float, done: Any) -> bool:
    """Polls ``done()`` until it is true or the time is up; its last answer."""
    import time

    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(done())


def test_sql_csv_timeout_and_ctrl_c_through_copy(shop: Shop, cli: Any) -> None:
    import os
    import signal
    import subprocess
    import sys

    result = cli("sql", "select pg_sleep(5) as s, 1 as one", "--timeout", "0.2", "-f", "csv")
    assert result.exit_code == 4 and "statement timed out" in result.stderr and result.stdout == ""
    query = "select g as n, 'dbcli-copy-sleeper' as t from generate_series(1, 3) g, pg_sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "sql", "-f", "csv", query],
                            env={**os.environ, "DBCLI_CONFIG": str(shop.config)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        copying = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%dbcli-copy-sleeper%' "
                   "AND pid <> pg_backend_pid()")
        assert _within(30, lambda: shop.scalar(copying) == 1)  # it runs as COPY
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    assert _within(10, lambda: shop.scalar(copying) == 0)
