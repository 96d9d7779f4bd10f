"""Input readers: formats, sniffing, line numbers in errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dbcli.errors import InvalidInputError
from dbcli.readers import iter_records


def records(text: str, fmt: str = "sniff", extended: bool = False, json_only: bool = False) -> list[tuple[int, dict]]:
    return list(iter_records(io.StringIO(text), fmt, extended=extended, json_only=json_only))


def test_sniffs_array_jsonl_and_csv() -> None:
    assert records('[{"a": 1}, {"a": 2}]') == [(1, {"a": 1}), (2, {"a": 2})]
    assert records('{"a": 1}\n\n{"a": 2}\n') == [(1, {"a": 1}), (3, {"a": 2})]
    assert records("a,b\n1,x\n2,y\n") == [(2, {"a": "1", "b": "x"}), (3, {"a": "2", "b": "y"})]


def test_bad_lines_are_named() -> None:
    with pytest.raises(InvalidInputError, match="line 2: invalid JSON"):
        records('{"a": 1}\n{"a": \n', "jsonl")
    with pytest.raises(InvalidInputError, match="line 3: expected 2 fields, got 3"):
        records("a,b\n1,2\n1,2,3\n", "csv")


@pytest.mark.parametrize("fmt", ["sniff", "csv", "jsonl", "json"])
def test_input_that_is_not_utf8_is_invalid_input(fmt: str) -> None:
    # a binary file given by mistake: exit 5, not an unexpected UnicodeDecodeError (exit 1)
    data = b'{"a": 1}\n' * 3 + b"\x8e\xff\x00 binary"
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    with pytest.raises(InvalidInputError, match="the input is not UTF-8 text"):
        list(iter_records(stream, fmt))


def test_binary_file_is_invalid_input_wherever_it_is_read(tmp_path: Path) -> None:
    from dbcli.readers import open_input

    path = tmp_path / "upload.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 5000 + b"\x8e\xff")
    with open_input(str(path)) as stream, pytest.raises(InvalidInputError, match="the input is not UTF-8 text"):
        stream.read()  # what the sniff and the CSV fast path do, outside iter_records


def test_extended_json() -> None:
    (_, doc), = records('{"_id": {"$oid": "5f0c1a2b3c4d5e6f70819203"}, "at": {"$date": "2024-01-02T03:04:05Z"}}',
                        "jsonl", extended=True)
    assert type(doc["_id"]).__name__ == "ObjectId"
    assert doc["at"].year == 2024


def test_json_only_never_reads_text_as_csv() -> None:
    with pytest.raises(InvalidInputError, match="line 1: invalid JSON"):
        records("not json\n", json_only=True)
