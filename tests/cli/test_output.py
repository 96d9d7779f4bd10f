"""The JSON writers: one reused C encoder, chunked writes, exact numbers, flat memory."""

from __future__ import annotations

import io
import json
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from bson import ObjectId

from dbcli.output import Output


def _json(rows: object, columns: list[str] | None = None, fmt: str = "json", extended: bool = False) -> str:
    buf = io.StringIO()
    Output(fmt=fmt, stdout=buf).rows(rows, columns, extended=extended)  # type: ignore[arg-type]
    return buf.getvalue()


def test_many_rows_across_chunks_keep_exact_decimals() -> None:
    rows = [{"i": i, "price": Decimal(f"{i}.10"), "big": Decimal("1E+3")} for i in range(5000)]
    text = _json(rows)
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and text.count("\n") == 5002
    assert '"price":4999.10,' in text and '"big":1E+3}' in text
    assert json.loads(text, parse_float=Decimal)[1234]["price"] == Decimal("1234.10")
    lines = _json(rows, fmt="jsonl").splitlines()
    assert len(lines) == 5000 and json.loads(lines[-1], parse_float=Decimal)["price"] == Decimal("4999.10")


def test_columns_pick_and_order() -> None:
    rows = [{"b": 1, "a": 2, "c": 3}, {"a": 5}]
    assert _json(rows, ["a", "b"], fmt="jsonl") == '{"a":2,"b":1}\n{"a":5,"b":null}\n'


def test_nan_rows_neither_break_the_encoder_nor_pile_up_in_memory() -> None:
    rows = ({"n": float("nan"), "pad": "x" * 1000, "i": i} for i in range(20_000))
    sink = open("/dev/null", "w")  # noqa: SIM115 - closed below
    tracemalloc.start()
    try:
        Output(fmt="jsonl", stdout=sink).rows(rows, None)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        sink.close()
    assert held < 4 * 2**20  # before the fix, every row that raised stayed referenced (~25 MiB here)
    assert _json([{"n": float("inf")}, {"n": 1.5}], fmt="jsonl") == '{"n":"inf"}\n{"n":1.5}\n'


def test_extended_json_is_not_unmarked() -> None:
    oid = ObjectId("0123456789abcdef01234567")
    text = _json([{"_id": oid, "s": "\x00D12\x00"}], fmt="jsonl", extended=True)
    assert json.loads(text) == {"_id": {"$oid": "0123456789abcdef01234567"}, "s": "\x00D12\x00"}


def test_one_json_form_for_every_command(full_config_file: object, pg_conninfo: str, mongo_server: Any,
                                         mongo_db: str) -> None:
    # issue 15: JSON spacing differed between commands (Extended JSON came out as {"a": 1, "b": 2})
    import psycopg

    from tests.helpers import invoke

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, tags text[], doc jsonb)")
        conn.execute("""INSERT INTO t VALUES (1, '{a,b}', '{"k": [1, {"z": null}]}')""")
    client = mongo_server.client()
    client[mongo_db].c.insert_one({"_id": ObjectId("0123456789abcdef01234567"), "n": 1, "sub": {"k": [1, 2]}})
    client.close()
    outputs = [invoke(args) for args in (
        ["table", "get", "t", "1", "-f", "json"], ["table", "find", "t", "-f", "json"],
        ["table", "find", "t", "-f", "jsonl"], ["table", "export", "t", "-f", "json"],
        ["collection", "find", "c", "-f", "json"], ["collection", "find", "c", "-f", "jsonl"],
        ["collection", "export", "c", "-f", "json"], ["collection", "export", "c", "-f", "jsonl"],
        ["ping", "-f", "json"],
    )]
    for result in outputs:
        assert result.exit_code == 0, result.stderr
        for line in result.stdout.splitlines():
            body = line.rstrip(",")
            if body in ("[", "]"):
                continue
            assert body == json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")), line
    assert '{"_id":{"$oid":"0123456789abcdef01234567"},"n":1,"sub":{"k":[1,2]}}' in outputs[4].stdout


def test_counted_says_row_or_rows() -> None:
    from dbcli.output import counted

    # issue 15: the demo printed "(1 more rows)"
    assert [counted(n, "more row") for n in (0, 1, 2)] == ["0 more rows", "1 more row", "2 more rows"]


def test_table_headers_never_break_mid_word(config_file: object, pg_conninfo: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 15: at 80 columns rich broke a header inside a word ("order_dat" / "e")
    import psycopg

    from tests.helpers import invoke

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (order_id int PRIMARY KEY, user_id int, order_date timestamptz, "
                     "status text, total_amount numeric, shipping_address_id int, notes text)")
        conn.execute("INSERT INTO orders VALUES (1, 7, '2024-05-01 10:00:00.123456+00', 'delivered', 123.45, "
                     "NULL, 'a fairly long note about this order that will need folding'), "
                     "(2, 8, '2024-05-02 11:00:00+00', 'paid', 5, 3, NULL)")
    monkeypatch.setenv("COLUMNS", "80")
    headers = ["order_id", "user_id", "order_date", "status", "total_amount", "shipping_address_id", "notes"]
    for columns in (headers, headers[:-1], headers[:4]):
        result = invoke(["table", "find", "orders", "-f", "table", "--columns", ",".join(columns)])
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines)
        head = lines[1:lines.index(next(line for line in lines if line.startswith("┡")))]
        cells = [[cell.strip() for cell in line.strip("┃").split("┃")] for line in head]
        shown = ["".join(column) for column in zip(*cells, strict=True)]
        assert shown == columns  # each header whole, or broken only after an underscore
        for column in zip(*cells, strict=True):
            assert all(part.endswith("_") for part in column[:-1] if part), column
        if columns != headers:  # with room to spare, a short value stays whole while the long ones fold
            assert "delivered" in result.stdout


def test_ping_table_leaves_a_missing_value_empty(config_file: object) -> None:
    from tests.helpers import invoke

    # issue 15: ping's table printed a literal null in the error column
    result = invoke(["ping", "-f", "table"])
    assert result.exit_code == 0, result.stderr
    assert "null" not in result.stdout and "error" in result.stdout
