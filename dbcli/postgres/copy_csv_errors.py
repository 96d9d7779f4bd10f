"""COPY's own errors of a CSV import, told as the client-side checks told them.

The CSV import sends the file's text to COPY without checking its cells first: COPY stops at
the first cell or record it cannot read and names it in its CONTEXT, ``COPY t, line N, column c:
"value"`` for a cell, ``COPY t, line N: "record"`` for a record. This module turns that into the
one-line message of the client-side checks (``line L, column c: invalid input for integer: 'x'``,
``line L: expected 3 fields, got 4``), L being the source line of COPY's row N. The column's own
converter (:mod:`dbcli.postgres.converters`) is run on the value COPY quotes, so the wording is
the converter's; what no converter refuses (an enum label, a date only the server reads, a
constraint) keeps the server's message, placed on its line (:func:`dbcli.postgres.copy_load.placed_error`).
"""

from __future__ import annotations

import csv
import re
from typing import Any

from dbcli.errors import DbcliError, InvalidInputError
from dbcli.postgres.catalog import Column, Table
from dbcli.postgres.converters import converter_for, shown
from dbcli.postgres.copy_load import LineNumbers, placed_error, source_line

# COPY quotes at most this many bytes of a value or record, then "..." (MAX_COPY_DATA_DISPLAY)
_DISPLAY_BYTES = 100
_CELL = re.compile(r'COPY [^\n]*?, line (?P<line>\d+), column (?P<column>[^:\n]+): (?:"(?P<value>.*)"|null input)\Z',
                   re.S)
_RECORD = re.compile(r'COPY [^\n]*?, line (?P<line>\d+): "(?P<record>.*)"\Z', re.S)
_LINE = re.compile(r"COPY [^\n]*?, line (?P<line>\d+)\Z")  # a row checked after it was read (buffered)
_NOT_NULL = "23502"
_BAD_COPY_FORMAT = "22P04"
_TOO_LONG = "22001"
_OUT_OF_RANGE = "22003"


def csv_copy_error(err: DbcliError, e: Exception, lines: LineNumbers, table: Table, header: list[str],
                   dialect: dict[str, Any]) -> DbcliError:
    """``err`` (the translated server error ``e``) as the message the client-side checks give for
    the same cell or record, else placed on its source line.

    ``header``: the file's columns in order; ``dialect``: the csv module's reading of the file.
    """
    diag = getattr(e, "diag", None)
    context = (getattr(diag, "context", None) or "").rstrip("\n")
    state = getattr(e, "sqlstate", None)
    cell = _CELL.search(context)
    record = _RECORD.search(context) if cell is None else None
    found = cell or record or _LINE.search(context)
    line = source_line(lines, int(found["line"])) if found else None
    if line is None:
        return placed_error(err, e, lines, "line", table)
    where = f"line {line}"
    column_name = (cell["column"].strip() if cell else None) or getattr(diag, "column_name", None)
    column = table.columns.get(column_name) if column_name else None
    if state == _NOT_NULL and column is not None and column.name in header:  # else the server's (a default NULL)
        return InvalidInputError(f"{where}, column {column.name}: null value in a not-null column", sqlstate=state)
    if cell is not None and column is not None and cell["value"] is not None:
        message = _cell_message(column, cell["value"], state)
        if message is not None:
            return InvalidInputError(f"{where}, column {column.name}: {message}", sqlstate=state)
    if record is not None and state == _BAD_COPY_FORMAT:
        fields = _field_count(record["record"], dialect, header, getattr(diag, "message_primary", None) or "")
        if fields is not None and fields != len(header):
            return InvalidInputError(f"{where}: expected {len(header)} fields, got {fields}", sqlstate=state)
    return placed_error(err, e, lines, "line", table)


def _clipped(text: str) -> tuple[str, bool]:
    """(the text COPY quoted, whether COPY cut it short)."""
    if text.endswith("...") and len(text[:-3].encode()) > _DISPLAY_BYTES - 4:
        return text[:-3], True
    return text, False


def _cell_message(column: Column, value: str, state: str | None) -> str | None:
    """The converter's message for a cell COPY refused; None when the converter takes it."""
    value, clipped = _clipped(value)
    try:
        converter_for(column)(value)
    except ValueError as e:
        return str(e)
    if not clipped:
        return None
    # the converter saw only COPY's first 100 bytes: the kind of error is the server's, and the
    # message shows the value's start only, as the converter's own does
    if state == _TOO_LONG and column.is_string:
        return f"value too long for {column.data_type}: {shown(value)}"
    if state == _OUT_OF_RANGE:
        why = "numeric field overflow" if column.base_type == "numeric" else "value out of range"
        return f"{why} for {column.data_type}: {shown(value)}"
    return None


def _field_count(text: str, dialect: dict[str, Any], header: list[str], message: str) -> int | None:
    """The number of fields of the record COPY quoted; None where that cannot be told."""
    text, clipped = _clipped(text)
    if not clipped:
        try:
            rows = list(csv.reader(text.splitlines(keepends=True) or [""], **dialect))
        except csv.Error:
            return None
        return len(rows[0]) if len(rows) == 1 else None
    # a long record: COPY names the first missing column, which says how many fields there were
    missing = re.fullmatch(r'missing data for column "(?P<name>.*)"', message)
    if missing and missing["name"] in header:
        return header.index(missing["name"])
    return None
