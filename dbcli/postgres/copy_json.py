"""A query's rows as JSON lines or one JSON array, encoded by the server: ``row_to_json`` through COPY.

Used by ``table export -f jsonl|json`` and ``dbcli sql -f jsonl|json``. The server writes each
row as one JSON object (``row_to_json``), and COPY frames it as CSV with quote and delimiter bytes
that JSON text never contains raw (``row_to_json`` escapes control characters), so each line is
the server's JSON as it wrote it: no Python work per row. The forms are PostgreSQL's
(docs/tables.md, docs/sql.md). json and jsonb values are the one exception: row_to_json embeds
their own text (``{"k": 1}``, or a json value's line breaks as typed), so a result holding such
a column is re-encoded in dbcli's compact form, line by line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import IO, Any

import psycopg
from psycopg import sql

from dbcli.output import to_json
from dbcli.postgres.copy_out import copy_to

JSON_FORMATS = ("jsonl", "json")
# json, jsonb and their arrays: the columns whose text row_to_json embeds as it is
JSON_TYPE_OIDS = frozenset({114, 3802, 199, 3807})
_QUOTE, _DELIMITER = b"\x01", b"\x02"


def json_copy(select: sql.Composable) -> sql.Composed:
    """``COPY`` of ``select``'s rows as ``row_to_json`` objects, one a line."""
    # the line break ends a -- comment the query may end with
    # r.*: a whole-row reference even when the query has a column named r
    return sql.SQL("COPY (SELECT row_to_json(r.*) FROM ({}\n) r) TO STDOUT "
                   "(FORMAT csv, QUOTE {}, DELIMITER {})").format(select, sql.Literal(_QUOTE.decode()),
                                                                 sql.Literal(_DELIMITER.decode()))


def copy_json(conn: psycopg.Connection[Any], select: sql.Composable, sink: IO[bytes] | Callable[[bytes], Any],
              fmt: str, *, compact: bool, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
    """Write ``select``'s rows to ``sink`` in ``fmt`` (jsonl or json); the row count.

    ``compact``: the result has json or jsonb columns, re-encoded in dbcli's compact form."""
    write: Callable[[bytes], Any] = sink if callable(sink) else sink.write
    array = _JsonArray(write) if fmt == "json" else None
    if array is not None:
        write = array.write
    count = copy_to(conn, json_copy(select), _lines(write, compact), params or None)
    if array is not None:
        array.close()
    return count


def _lines(write: Callable[[bytes], Any], compact: bool) -> Callable[[bytes], Any]:
    """The COPY chunks (whole lines each) as JSON lines to ``write``."""
    def plain(chunk: bytes) -> None:
        write(_unquoted(chunk) if _QUOTE in chunk else chunk)

    def compacted(chunk: bytes) -> None:
        if _QUOTE in chunk:
            chunk = _unquoted(chunk)
        # numbers keep their exact text (Decimal), as they have it in the server's JSON
        write(b"\n".join(to_json(json.loads(line, parse_float=Decimal)).encode() if line else line
                         for line in chunk.split(b"\n")))

    return compacted if compact else plain


def _unquoted(chunk: bytes) -> bytes:
    """COPY quoted a value that held a raw line break (a json value's whitespace, embedded as
    typed): the quotes dropped and the breaks made spaces, one line a row again."""
    parts = chunk.split(_QUOTE)
    parts[1::2] = [p.replace(b"\r", b" ").replace(b"\n", b" ") for p in parts[1::2]]
    return b"".join(parts)


class _JsonArray:
    """JSON lines in (whole lines per write), one JSON array out, streaming."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self.out = write
        self.first = True
        write(b"[")

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.out(b"\n" if self.first else b",\n")
        self.first = False
        self.out(data[:-1].replace(b"\n", b",\n"))  # every chunk ends with its line's \n

    def close(self) -> None:
        self.out(b"]\n" if self.first else b"\n]\n")
