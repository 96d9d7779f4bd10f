"""Reading records from files or stdin: JSON array, JSONL, CSV; MongoDB Extended JSON on request.

Every record comes with the line number it starts on, so errors can name it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from dbcli.errors import InvalidInputError, NotFoundError

INPUT_FORMATS = ("json", "jsonl", "csv")
NOT_UTF8 = "dbcli-not-utf8"


def _not_utf8(error: UnicodeError) -> tuple[str, int]:
    # raised from whatever reads the file (a sniff, the CSV fast path, the record readers)
    encoding = getattr(error, "encoding", "utf-8")
    raise InvalidInputError(f"the input is not {'UTF-8' if encoding in ('utf-8', 'utf8') else encoding} text")


codecs.register_error(NOT_UTF8, _not_utf8)


def open_input(source: str, encoding: str = "utf-8") -> IO[str]:
    """A text stream for a path, or stdin for ``-`` (decoded from ``encoding``, a Python codec name)."""
    if source == "-":
        if encoding == "utf-8":
            return sys.stdin
        return io.TextIOWrapper(sys.stdin.buffer, encoding=encoding, errors=NOT_UTF8, newline="")
    path = Path(source)
    if not path.exists():
        raise NotFoundError(f"input file not found: {source}")
    try:
        return open(path, encoding=encoding, errors=NOT_UTF8, newline="")
    except OSError as e:
        raise InvalidInputError(f"cannot read {source}: {e.strerror}") from None


def guess_format(source: str, stream: IO[str], explicit: str | None = None) -> str:
    """Format from the flag, else the file suffix, else the first non-blank character."""
    if explicit:
        fmt = explicit.lower()
        if fmt == "ndjson":
            fmt = "jsonl"
        if fmt not in INPUT_FORMATS:
            raise InvalidInputError(f"unknown input format {explicit!r} (choose from json, jsonl, csv)")
        return fmt
    suffix = Path(source).suffix.lower().lstrip(".") if source != "-" else ""
    if suffix in ("json", "jsonl", "csv"):
        return suffix
    if suffix == "ndjson":
        return "jsonl"
    return "sniff"


@dataclass(frozen=True)
class CsvReading:
    """How to read a CSV file: Python csv dialect keywords, the header, the NULL text.

    ``names``: the file's columns in order (the header line, if there is one, is skipped);
    without them the header names the columns. A cell equal to ``null`` reads as an empty cell.
    """

    dialect: dict[str, Any] = field(default_factory=dict)
    header: bool = True
    names: tuple[str, ...] | None = None
    null: str = ""


def iter_records(stream: IO[str], fmt: str, *, extended: bool = False,
                 json_only: bool = False, reading: CsvReading | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record). ``fmt`` may be ``sniff``: a leading ``[`` means a JSON array.

    ``json_only``: never guess CSV (documents take CSV only when named so), so stray text fails
    on its line instead of becoming a header. ``reading``: the CSV dialect (default: plain CSV
    with a header).
    """
    line = 0
    try:
        if fmt == "sniff":
            stream, fmt = sniff(stream)
            if json_only and fmt == "csv":
                fmt = "jsonl"
        if fmt == "csv":
            records = _csv_records(stream, reading or CsvReading())
        elif fmt == "jsonl":
            records = _jsonl_records(stream, extended)
        else:
            records = _json_array_records(stream, extended)
        for line, record in records:
            yield line, record
    except UnicodeDecodeError:
        where = f" (after line {line})" if line else ""
        raise InvalidInputError(f"the input is not UTF-8 text{where}") from None


def sniff(stream: IO[str]) -> tuple[IO[str], str]:
    head = stream.read(4096)
    first = head.lstrip()[:1]
    rest = io.StringIO(head)
    # a text stream (io.TextIOBase), which typing.IO does not name
    chained = cast(IO[str], _Chain(rest, stream))
    if first == "[":
        return chained, "json"
    if first == "{" or first == "":
        return chained, "jsonl"
    return chained, "csv"


class _Chain(io.TextIOBase):
    """The sniffed head followed by the rest of the stream."""

    def __init__(self, head: io.StringIO, tail: IO[str]) -> None:
        self._head, self._tail = head, tail

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        data = self._head.read(size if size is not None else -1)
        if size is None or size < 0:
            return data + self._tail.read()
        if len(data) < size:
            data += self._tail.read(size - len(data))
        return data

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]  # as typeshed's TextIOBase
        line = self._head.readline()
        if line.endswith("\n") or (line and self._head.tell() < len(self._head.getvalue())):
            return line
        return line + self._tail.readline()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # as typeshed's TextIOBase
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def _loads(text: str, extended: bool) -> Any:
    if extended:
        # bson (pymongo) costs ~35 ms at start-up: only documents read as Extended JSON need it
        from bson import json_util
        from bson.errors import BSONError

        try:
            return json_util.loads(text)
        except (BSONError, KeyError, OverflowError) as e:  # a bad $oid, $date, ...: bad input like bad JSON
            raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        except ArithmeticError:  # decimal's own errors say nothing readable
            raise ValueError("invalid $numberDecimal value") from None
    return json.loads(text)


def _jsonl_records(stream: IO[str], extended: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = _loads(line, extended)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(f"line {lineno}: invalid JSON ({_short(e)})") from None
        if not isinstance(value, dict):
            raise InvalidInputError(f"line {lineno}: expected a JSON object")
        yield lineno, value


def _json_array_records(stream: IO[str], extended: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    text = stream.read()
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidInputError(f"invalid JSON ({_short(e)})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInputError("expected a JSON array of objects")
    if extended:
        try:
            value = _loads(json.dumps(value), extended)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(f"invalid JSON ({_short(e)})") from None
    for i, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise InvalidInputError(f"item {i}: expected a JSON object")
        yield i, item


def _csv_records(stream: IO[str], reading: CsvReading) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(stream, **reading.dialect)
    header: list[str] = list(reading.names or [])
    if reading.header:
        try:
            names = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InvalidInputError(f"line 1: invalid CSV ({e})") from None
        header = header or names
    if len(set(header)) != len(header):
        raise InvalidInputError("line 1: the CSV header repeats a column name")
    try:
        for row in reader:
            lineno = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise InvalidInputError(f"line {lineno}: expected {len(header)} fields, got {len(row)}")
            if reading.null:
                row = ["" if cell == reading.null else cell for cell in row]
            yield lineno, dict(zip(header, row, strict=True))
    except csv.Error as e:
        raise InvalidInputError(f"line {reader.line_num}: invalid CSV ({e})") from None


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120]
