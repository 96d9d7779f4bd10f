"""The JSON writers: one reused C encoder, chunked writes, exact numbers, flat memory."""

from __future__ import annotations

import io
import json
import tracemalloc
from decimal import Decimal

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
