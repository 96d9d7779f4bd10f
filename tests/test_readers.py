"""Input readers: formats, sniffing, line numbers in errors."""

from __future__ import annotations

import io

import pytest

from dbcli.errors import InvalidInputError
from dbcli.readers import iter_records


def records(text: str, fmt: str = "sniff", extended: bool = False) -> list[tuple[int, dict]]:
    return list(iter_records(io.StringIO(text), fmt, extended=extended))


def test_sniffs_array_jsonl_and_csv() -> None:
    assert records('[{"a": 1}, {"a": 2}]') == [(1, {"a": 1}), (2, {"a": 2})]
    assert records('{"a": 1}\n\n{"a": 2}\n') == [(1, {"a": 1}), (3, {"a": 2})]
    assert records("a,b\n1,x\n2,y\n") == [(2, {"a": "1", "b": "x"}), (3, {"a": "2", "b": "y"})]


def test_bad_lines_are_named() -> None:
    with pytest.raises(InvalidInputError, match="line 2: invalid JSON"):
        records('{"a": 1}\n{"a": \n', "jsonl")
    with pytest.raises(InvalidInputError, match="line 3: expected 2 fields, got 3"):
        records("a,b\n1,2\n1,2,3\n", "csv")


def test_extended_json() -> None:
    (_, doc), = records('{"_id": {"$oid": "5f0c1a2b3c4d5e6f70819203"}, "at": {"$date": "2024-01-02T03:04:05Z"}}',
                        "jsonl", extended=True)
    assert type(doc["_id"]).__name__ == "ObjectId"
    assert doc["at"].year == 2024
