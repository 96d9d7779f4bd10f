"""Bulk export (COPY TO STDOUT) of a table's rows as CSV, JSON lines or one JSON array.

Export streams COPY output chunk by chunk: memory stays flat for any table size. Tables with
encrypted columns are exported row by row instead, so the values can be decrypted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import IO, Any

from psycopg import sql

from dbcli.errors import UsageError
from dbcli.output import Output, to_json
from dbcli.postgres.tables import Filter, TableGateway
from dbcli.postgres.uow import UnitOfWork

EXPORT_FORMATS = ("csv", "jsonl", "json")


def export_table(uow: UnitOfWork, name: str, sink: IO[bytes], *, fmt: str = "csv",
                 filters: Sequence[Filter] = (), columns: Sequence[str] | None = None,
                 order_by: Sequence[str] = ()) -> int:
    """Write the table's (matching) rows to ``sink``; returns how many."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    gw = uow.table(name)
    if gw.enc is not None and set(columns or gw.table.columns) & gw.encrypted:
        return _export_rows(gw, sink, fmt, filters, columns, order_by)
    return _export_copy(gw, sink, fmt, filters, columns, order_by)


_JSON_TYPES = frozenset({"json", "jsonb", "_json", "_jsonb"})


def _export_copy(gw: TableGateway, sink: IO[bytes], fmt: str, filters: Sequence[Filter],
                 columns: Sequence[str] | None, order_by: Sequence[str]) -> int:
    _, select, params = gw.select_sql(filters, columns=columns, order_by=order_by)
    if fmt == "csv":
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(select)
    else:
        # CSV framing with quote and delimiter bytes that JSON text never contains raw (row_to_json
        # escapes control characters), so each line is the JSON object exactly as the server wrote it
        statement = sql.SQL("COPY (SELECT row_to_json(r) FROM ({}) r) TO STDOUT "
                            "(FORMAT csv, QUOTE {}, DELIMITER {})").format(select, sql.Literal("\x01"),
                                                                          sql.Literal("\x02"))
    with gw.conn.cursor() as cur:
        # COPY takes no bound parameters: psycopg merges them client-side with its own quoting
        with cur.copy(statement, params or None) as copy:
            chunks: Iterable[Any] = copy
            if fmt != "csv" and any(gw.table.columns[c].base_type in _JSON_TYPES
                                    for c in columns or gw.table.columns if c in gw.table.columns):
                chunks = _compacted(copy)
            if fmt == "json":
                _json_array(chunks, sink)
            else:
                for chunk in chunks:
                    sink.write(chunk)
        return max(cur.rowcount, 0)


def _compacted(chunks: Iterable[Any]) -> Iterator[bytes]:
    """JSON lines re-encoded in dbcli's compact form: row_to_json embeds json and jsonb values in
    PostgreSQL's own text form ({"k": 1, "n": [1, 2]}). Numbers keep their exact text."""
    for chunk in chunks:
        lines = bytes(chunk).split(b"\n")
        yield b"\n".join(to_json(json.loads(line, parse_float=Decimal)).encode() if line else line
                         for line in lines)


def _json_array(chunks: Any, sink: IO[bytes]) -> None:
    """JSON lines in, one JSON array out (streaming)."""
    sink.write(b"[")
    pending = False  # a record ended; its separator depends on whether another follows
    for chunk in chunks:
        data = bytes(chunk)
        if not data:
            continue
        sink.write(b",\n" if pending else b"\n")
        pending = data.endswith(b"\n")
        body = data[:-1] if pending else data
        sink.write(body.replace(b"\n", b",\n"))
    sink.write(b"\n]\n" if pending else b"]\n")


def _export_rows(gw: TableGateway, sink: IO[bytes], fmt: str, filters: Sequence[Filter],
                 columns: Sequence[str] | None, order_by: Sequence[str]) -> int:
    names, rows = gw.find(filters, columns=columns, order_by=order_by)
    return Output(fmt=fmt, stdout=_Utf8Writer(sink)).rows(rows, names)  # type: ignore[arg-type]


class _Utf8Writer:
    """The text-stream face :class:`Output` writes to, over a byte sink."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink

    def write(self, text: str) -> int:
        self.sink.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        self.sink.flush()
