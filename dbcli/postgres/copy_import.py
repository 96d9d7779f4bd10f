"""Bulk import (COPY FROM STDIN) of a file or stdin into a table.

Import streams through COPY in the caller's transaction, so a file goes in whole or not at all.
CSV takes a fast path (:mod:`dbcli.postgres.copy_csv`): its text goes to COPY as it is, COPY
checks the cells, and its error is told with the line and column as the client-side checks tell
theirs. JSON records are converted one by one here (every value checked against its column's
type, so a bad value is reported with its line and column) and sent with ``write_row``; what only
the server can check (constraints, unusual date text) is mapped back to the line through COPY's
line number. ``--upsert`` copies into a temporary staging table and merges with INSERT ... ON
CONFLICT (:mod:`dbcli.postgres.copy_load`).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import psycopg

from dbcli import readers
from dbcli.errors import InvalidInputError, UsageError
from dbcli.postgres.converters import RowConverter
from dbcli.postgres.copy_csv import import_csv
from dbcli.postgres.copy_load import ImportResult, Load, placed_error
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.errors import translate
from dbcli.postgres.tables import TableGateway
from dbcli.postgres.uow import UnitOfWork


@contextmanager
def open_source(source: str, fmt: str | None = None, encoding: str = "utf-8") -> Iterator[tuple[str, IO[str]]]:
    """(kind, text stream) of a path or ``-``; kind is json, jsonl or csv."""
    raw = readers.open_input(source, encoding)
    try:
        kind = readers.guess_format(source, raw, fmt)
        stream = raw
        if kind == "sniff":
            stream, kind = readers.sniff(raw)  # the readers' own rule, so both agree on the kind
        yield kind, stream
    finally:
        if raw is not sys.stdin:
            raw.close()


@contextmanager
def read_records(source: str, fmt: str | None = None) -> Iterator[tuple[str, Iterator[tuple[int, dict[str, Any]]]]]:
    """(kind, records) of a path or ``-`` (CSV cells are text, JSON values typed)."""
    with open_source(source, fmt) as (kind, stream):
        yield kind, readers.iter_records(stream, kind)


def import_file(uow: UnitOfWork, name: str, source: str, *, fmt: str | None = None, upsert: bool = False,
                conflict_key: str | None = None, progress: Callable[[int], None] | None = None,
                options: CsvOptions | None = None, columns: Sequence[str] | None = None,
                skip_bad: int | None = None) -> ImportResult:
    """Load ``source`` (a path or ``-``) into table ``name``; all rows or none (the caller commits).

    ``fmt`` may be tsv (CSV with tabs). ``options``, ``columns`` and ``skip_bad`` apply to CSV input
    (:func:`dbcli.postgres.copy_csv.import_csv`); given for JSON input they are a usage error.
    """
    gw = uow.table(name)
    if gw.table.relkind not in ("r", "p"):
        raise InvalidInputError(f"{gw.table.display} is a {gw.table.kind}: import needs a table")
    options = options or CsvOptions(delimiter="\t" if fmt == "tsv" else ",")
    with open_source(source, "csv" if fmt == "tsv" else fmt, options.encoding) as (kind, stream):
        if kind != "csv" and (options != CsvOptions() or columns or skip_bad is not None):
            raise UsageError(f"the CSV options apply to csv and tsv input only; this input is {kind}")
        if kind == "csv" and not gw.encrypted:
            return import_csv(gw, stream, upsert=upsert, conflict_key=conflict_key, progress=progress,
                              options=options, columns=columns, skip_bad=skip_bad)
        if skip_bad is not None:
            raise InvalidInputError(f"--skip-bad is not available for {gw.table.display}: it has encrypted columns")
        names = tuple(columns or []) or (None if options.header else
                                         tuple(c.name for c in gw.table.columns.values() if not c.generated))
        reading = readers.CsvReading(options.reader_kwargs(), options.header, names, options.null)
        return import_records(gw, readers.iter_records(stream, kind, reading=reading), kind=kind, upsert=upsert,
                              conflict_key=conflict_key, progress=progress)


def import_records(gw: TableGateway, records: Iterator[tuple[int, dict[str, Any]]], *, kind: str = "jsonl",
                   upsert: bool = False, conflict_key: str | None = None,
                   progress: Callable[[int], None] | None = None) -> ImportResult:
    """``records`` are (line number, record) pairs as :func:`dbcli.readers.iter_records` yields them.

    Each record is converted client-side and sent with ``write_row``.
    """
    label = "item" if kind == "json" else "line"
    first = next(records, None)
    if first is None:
        return ImportResult(table=gw.table.display)
    names = list(first[1])
    if not names:
        raise InvalidInputError(f"{label} {first[0]}: the record has no fields")
    lines = array("q")
    load = Load(gw, names, upsert, conflict_key, lines)
    convert = RowConverter(gw.table, names, typed=kind != "csv", csv=kind == "csv")
    try:
        with load.cur.copy(load.copy_statement()) as copy:
            for values in _rows(gw, records, first, names, convert, label, lines, progress):
                copy.write_row(values)
    except psycopg.Error as e:
        raise placed_error(translate(e), e, lines, label, gw.table) from e
    return load.finish()


def _rows(gw: TableGateway, records: Iterator[tuple[int, dict[str, Any]]], first: tuple[int, dict[str, Any]],
          names: list[str], convert: RowConverter, label: str, lines: array[int],
          progress: Callable[[int], None] | None) -> Iterator[list[Any]]:
    keys = set(names)
    enc, display = gw.enc, gw.table.display
    lineno, record = first
    while True:
        if record.keys() != keys:
            missing, extra = sorted(keys - record.keys()), sorted(record.keys() - keys)
            detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                             f"extra {', '.join(extra)}" if extra else ""]))
            raise InvalidInputError(f"{label} {lineno}: the fields differ from the first record's ({detail})")
        values = convert(record, f"{label} {lineno}")
        if enc is not None:
            row = enc.encrypt_row(display, dict(zip(names, values, strict=True)))
            values = [row[n] for n in names]
        lines.append(lineno)
        if progress is not None and len(lines) % 5000 == 0:
            progress(len(lines))
        yield values
        nxt = next(records, None)
        if nxt is None:
            break
        lineno, record = nxt
    if progress is not None:
        progress(len(lines))
