"""Bulk export (COPY TO STDOUT) of a table's rows as CSV, JSON lines or one JSON array.

Export streams COPY output chunk by chunk: memory stays flat for any table size. Tables with
encrypted columns are exported row by row instead, so the values can be decrypted.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, Any

from psycopg import sql

from dbcli.errors import InvalidInputError, UsageError
from dbcli.output import Output, cell_text
from dbcli.postgres.copy_json import copy_json
from dbcli.postgres.copy_out import copy_to
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.tables import Filter, TableGateway
from dbcli.postgres.uow import UnitOfWork

EXPORT_FORMATS = ("csv", "jsonl", "json")


def export_table(uow: UnitOfWork, name: str, sink: IO[bytes], *, fmt: str = "csv",
                 filters: Sequence[Filter] = (), columns: Sequence[str] | None = None,
                 order_by: Sequence[str] = (), options: CsvOptions | None = None) -> int:
    """Write the table's (matching) rows to ``sink``; returns how many.

    ``options``: the CSV dialect of a csv (or tsv) export (default: dbcli's CSV).
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    gw = uow.table(name)
    options = options or CsvOptions()
    if gw.enc is not None and set(columns or gw.table.columns) & gw.encrypted:
        return _export_rows(gw, sink, fmt, filters, columns, order_by, options)
    return _export_copy(gw, sink, fmt, filters, columns, order_by, options)


_JSON_TYPES = frozenset({"json", "jsonb", "_json", "_jsonb"})


def _export_copy(gw: TableGateway, sink: IO[bytes], fmt: str, filters: Sequence[Filter],
                 columns: Sequence[str] | None, order_by: Sequence[str], options: CsvOptions) -> int:
    _, select, params = gw.select_sql(filters, columns=columns, order_by=order_by)
    if fmt == "csv":
        # the server converts to the file's encoding: no Python work per row
        statement = sql.SQL("COPY ({}) TO STDOUT ({})").format(select, options.copy_options(encoding=True))
        return copy_to(gw.conn, statement, sink, params or None)
    compact = any(gw.table.columns[c].base_type in _JSON_TYPES
                  for c in columns or gw.table.columns if c in gw.table.columns)
    return copy_json(gw.conn, select, sink, fmt, compact=compact, params=params)


def _export_rows(gw: TableGateway, sink: IO[bytes], fmt: str, filters: Sequence[Filter],
                 columns: Sequence[str] | None, order_by: Sequence[str], options: CsvOptions) -> int:
    names, rows = gw.find(filters, columns=columns, order_by=order_by)
    if fmt == "csv" and options != CsvOptions():
        return _csv_rows(rows, names, sink, options)
    return Output(fmt=fmt, stdout=_Utf8Writer(sink)).rows(rows, names)  # type: ignore[arg-type]


def _csv_rows(rows: Iterable[dict[str, Any]], names: list[str], sink: IO[bytes], options: CsvOptions) -> int:
    """Decrypted rows in the given dialect, NULL written as its --null text, as COPY would write them."""
    n = 0
    try:
        writer = csv.writer(_Utf8Writer(sink, options.encoding), lineterminator="\n", **options.reader_kwargs())
        if options.header:
            writer.writerow(names)
        for row in rows:
            writer.writerow([options.null if row[c] is None else cell_text(row[c]) for c in names])
            n += 1
    except UnicodeEncodeError as e:
        raise InvalidInputError(f"row {n + 1}: {e.object[e.start:e.end]!r} cannot be written in {options.encoding}") \
            from None
    return n


class _Utf8Writer:
    """The text-stream face :class:`Output` writes to, over a byte sink (UTF-8 unless told)."""

    def __init__(self, sink: IO[bytes], encoding: str = "utf-8") -> None:
        self.sink = sink
        self.encoding = encoding

    def write(self, text: str) -> int:
        self.sink.write(text.encode(self.encoding))
        return len(text)

    def flush(self) -> None:
        self.sink.flush()
