"""Bulk import (COPY FROM STDIN) and export (COPY TO STDOUT) of tables.

Import streams through COPY in the caller's transaction, so a file goes in whole or not at all.
Every value is checked client-side against its column's type first, so a bad value is reported
with its line and column; what only the server can check (constraints, unusual date text) is
mapped back to the line through the COPY row number. CSV takes a fast path: batches of the file's
own text are parsed and checked column by column, then sent as they are (``FORMAT csv``); JSON
records are converted one by one and sent with ``write_row``. ``--upsert`` copies into a
temporary staging table and merges with INSERT ... ON CONFLICT.

Export streams COPY output chunk by chunk: memory stays flat for any table size. Tables with
encrypted columns are exported row by row instead, so the values can be decrypted.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from dbcli.errors import DbcliError, InvalidInputError
from dbcli.postgres.catalog import (
    BadValue,
    Column,
    RowConverter,
    Table,
    csv_column_check,
    csv_field_regex,
    unique_keys,
    unknown_message,
)
from dbcli.postgres.tables import Filter, TableGateway, bump_sequences

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from dbcli.postgres.uow import UnitOfWork

EXPORT_FORMATS = ("csv", "jsonl", "json")
_COPY_CONTEXT = re.compile(r"COPY [^\n]*?, line (?P<line>\d+)(?:, column (?P<column>[^:]+))?")


@dataclass
class ImportResult:
    table: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_row(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged}


# ---- import -----------------------------------------------------------------------------------

@contextmanager
def open_source(source: str, fmt: str | None = None) -> Iterator[tuple[str, IO[str]]]:
    """(kind, text stream) of a path or ``-``; kind is json, jsonl or csv."""
    from dbcli import readers

    raw = readers.open_input(source)
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
    from dbcli import readers

    with open_source(source, fmt) as (kind, stream):
        yield kind, readers.iter_records(stream, kind)


def import_file(uow: UnitOfWork, name: str, source: str, *, fmt: str | None = None, upsert: bool = False,
                conflict_key: str | None = None, progress: Callable[[int], None] | None = None) -> ImportResult:
    """Load ``source`` (a path or ``-``) into table ``name``; all rows or none (the caller commits)."""
    from dbcli import readers

    gw = uow.table(name)
    if gw.table.relkind not in ("r", "p"):
        raise InvalidInputError(f"{gw.table.display} is a {gw.table.kind}: import needs a table")
    with open_source(source, fmt) as (kind, stream):
        if kind == "csv" and not gw.encrypted:
            return import_csv(gw, stream, upsert=upsert, conflict_key=conflict_key, progress=progress)
        return import_records(gw, readers.iter_records(stream, kind), kind=kind, upsert=upsert,
                              conflict_key=conflict_key, progress=progress)


class _Load:
    """What every import does around its COPY: target (the table or a staging table), merge, sequences."""

    def __init__(self, gw: TableGateway, names: list[str], upsert: bool, conflict_key: str | None) -> None:
        from psycopg import sql

        gw.check_writable(names)
        self.gw, self.names = gw, names
        self.key = _conflict_target(gw, names, conflict_key) if upsert else None
        self.cur = gw.conn.cursor()
        self.target: sql.Composable = gw.table.ident()
        if self.key is not None:
            self.target = sql.Identifier("dbcli_import_stage")
            self.cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target))
            self.cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                self.target, _idents(names), gw.table.ident()))
        self.lines = array("q")  # COPY row number -> source line, to place the server's errors

    def copy_statement(self, options: sql.Composable | None = None) -> sql.Composable:
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(self.target, _idents(self.names))
        return statement + sql.SQL(" ({})").format(options) if options is not None else statement

    def finish(self) -> ImportResult:
        gw, table = self.gw, self.gw.table
        result = ImportResult(table=table.display, rows=len(self.lines))
        if self.key is None:
            result.inserted = result.rows
        else:
            result.inserted, result.updated = _merge(gw, self.cur, self.target, self.names, self.key)
            result.unchanged = result.rows - result.inserted - result.updated
        identity = [n for n in self.names if table.columns[n].identity]
        if identity:
            bump_sequences(gw.conn, table, identity)
        gw.wrote = gw.wrote or result.inserted + result.updated > 0
        return result


def import_records(gw: TableGateway, records: Iterator[tuple[int, dict[str, Any]]], *, kind: str = "jsonl",
                   upsert: bool = False, conflict_key: str | None = None,
                   progress: Callable[[int], None] | None = None) -> ImportResult:
    """``records`` are (line number, record) pairs as :func:`dbcli.readers.iter_records` yields them.

    Each record is converted client-side and sent with ``write_row``.
    """
    import psycopg

    from dbcli.postgres.connection import translate

    label = "item" if kind == "json" else "line"
    first = next(records, None)
    if first is None:
        return ImportResult(table=gw.table.display)
    names = list(first[1])
    if not names:
        raise InvalidInputError(f"{label} {first[0]}: the record has no fields")
    load = _Load(gw, names, upsert, conflict_key)
    convert = RowConverter(gw.table, names, typed=kind != "csv", csv=kind == "csv")
    try:
        with load.cur.copy(load.copy_statement()) as copy:
            for values in _rows(gw, records, first, names, convert, label, load.lines, progress):
                copy.write_row(values)
    except psycopg.Error as e:
        raise _placed(translate(e), e, load.lines, label, gw.table) from e
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


CSV_BATCH_BYTES = 1 << 18  # text per COPY write: big enough to amortise, small enough to stream


def import_csv(gw: TableGateway, stream: IO[str], *, upsert: bool = False, conflict_key: str | None = None,
               progress: Callable[[int], None] | None = None) -> ImportResult:
    """The fast path for CSV: the file's own text goes to ``COPY ... (FORMAT csv)`` in batches.

    Each batch is parsed with the csv module first and checked column by column against the
    catalog types (:func:`dbcli.postgres.catalog.csv_column_check`), so a bad cell is reported with its
    line and column before anything reaches the server; nothing is re-encoded, which keeps the
    throughput close to ``psql \\copy``. CSV NULL rules are COPY's: an unquoted empty cell is NULL,
    a quoted one ("") the empty string, except in NOT NULL text columns (FORCE_NOT_NULL).
    """
    import psycopg
    from psycopg import sql

    from dbcli.postgres.connection import translate

    batches = _csv_batches(stream)
    head = next(batches, None)
    if head is None:
        return ImportResult(table=gw.table.display)
    header, first_line = _csv_header(head)
    if len(set(header)) != len(header):
        raise InvalidInputError("line 1: the CSV header repeats a column name")
    load = _Load(gw, header, upsert, conflict_key)
    checks = [(name, check) for name, check in ((n, csv_column_check(gw.table.columns[n])) for n in header)
              if check is not None]
    records = _records_regex([gw.table.columns[n] for n in header])
    positions = {name: i for i, name in enumerate(header)}
    force = [n for n in header if gw.table.columns[n].is_string and gw.table.columns[n].not_null]
    options = sql.SQL("FORMAT csv")
    if force:
        options += sql.SQL(", FORCE_NOT_NULL ({})").format(_idents(force))
    lines = _LineMap()
    load.lines = lines  # type: ignore[assignment]
    pending = [(first_line, head[1][first_line - head[0]:])] if len(head[1]) > first_line - head[0] else []
    try:
        with load.cur.copy(load.copy_statement(options), writer=_queued_writer(load.cur)) as copy:
            for first, chunk in itertools.chain(pending, batches):
                text = _batch_text(chunk)
                if records is not None and records(text):
                    count, ends = len(chunk), None  # one record a line, every cell valid: nothing to split
                else:
                    rows, text, ends = _csv_batch(chunk, first, len(header))
                    if not rows:
                        continue
                    for name, check in checks:
                        try:
                            check(list(map(operator.itemgetter(positions[name]), rows)))
                        except BadValue as e:
                            where = ends[e.index] if ends else first + e.index
                            raise InvalidInputError(f"line {where}, column {name}: {e}") from None
                    count = len(rows)
                if "\x00" in text:
                    raise InvalidInputError(f"line {first}: NUL characters are not allowed in CSV text")
                lines.add(first, count, ends)
                copy.write(text)
                if progress is not None:
                    progress(len(lines))
    except psycopg.Error as e:
        raise _placed(translate(e), e, lines, "line", gw.table) from e
    return load.finish()


def _batch_text(chunk: list[str]) -> str:
    """The lines as COPY gets them: a last line without its line break gets one (a CR-only file's
    last line ends in \r already, and COPY takes one line-break style per file)."""
    text = "".join(chunk)
    return text if text.endswith(("\n", "\r")) else text + "\n"


def _records_regex(columns: list[Column]) -> Callable[[str], Any] | None:
    """A match of a whole batch of one-line CSV records whose every cell passes its column's check.

    Most batches are like that, and one match over their text costs about a third of splitting
    them into cells with the csv module and checking those (bench/bench_tables.py); any batch it
    does not match (a bad cell, a quoted number, a line break inside quotes, a blank line) takes
    the full path, which reports or accepts it exactly. Not for one column: there a blank line
    would read as an empty cell, where the full path skips it.
    """
    fields = [csv_field_regex(col) for col in columns]
    if len(fields) < 2 or any(f is None for f in fields):
        return None
    return re.compile("(?:" + ",".join(fields) + r"\r?\n)*+", re.ASCII).fullmatch


def _queued_writer(cur: psycopg.Cursor[Any], depth: int = 4) -> Any:
    """A COPY writer whose thread sends while the caller parses and checks the next batch.

    psycopg's own QueuedLibpqWriter queues up to 1024 buffers, so a reader faster than the
    server would pile the file up in memory; this one holds at most ``depth`` batches.
    """
    import queue
    import threading

    from psycopg.copy import LibpqWriter

    class BoundedQueuedWriter(LibpqWriter):
        def __init__(self) -> None:
            super().__init__(cur)
            self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
            self._thread: threading.Thread | None = None
            self._error: BaseException | None = None

        def _work(self) -> None:
            try:
                while (data := self._queue.get()) is not None:
                    LibpqWriter.write(self, data)
            except BaseException as e:  # handed to the caller's thread
                self._error = e
                while self._queue.get() is not None:  # keep draining so put() never blocks forever
                    pass

        def write(self, data: Any) -> None:
            if self._error is not None:
                raise self._error
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dbcli-copy", daemon=True)
                self._thread.start()
            self._queue.put(data)

        def finish(self, exc: BaseException | None = None) -> None:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
            if self._error is not None:
                raise self._error
            super().finish(exc)

    return BoundedQueuedWriter()


def _csv_batches(stream: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of whole CSV records, about CSV_BATCH_BYTES of text each."""
    line_no = 1
    while True:
        chunk = stream.readlines(CSV_BATCH_BYTES)
        if not chunk:
            return
        # an odd number of quote characters means a quoted field runs on: read to its end
        quotes = sum(map(str.count, chunk, itertools.repeat('"')))
        while quotes % 2:
            more = stream.readline()
            if not more:
                break  # unterminated: the parser reports it
            chunk.append(more)
            quotes += more.count('"')
        yield line_no, chunk
        line_no += len(chunk)


def _csv_header(batch: tuple[int, list[str]]) -> tuple[list[str], int]:
    """The header's names and the line number where the data starts."""
    import csv

    lines = iter(batch[1])
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        raise InvalidInputError(f"line 1: invalid CSV header ({e or 'empty'})") from None
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
    return header, 1 + reader.line_num


def _csv_batch(chunk: list[str], first: int, width: int) -> tuple[list[list[str]], str, list[int] | None]:
    """Rows, the text to send and, unless row i is line ``first + i``, each row's line number."""
    import csv

    try:
        rows = list(csv.reader(chunk))
    except csv.Error:
        rows = []
    if rows and len(rows) == len(chunk) and min(map(len, rows)) == width == max(map(len, rows)):
        return rows, _batch_text(chunk), None
    # blank lines, quoted newlines, short rows or bad quoting: walk record by record
    rows, ends, keep, raw = [], [], [], []

    def tap() -> Iterator[str]:
        for line in chunk:
            raw.append(line)
            yield line

    reader = csv.reader(tap())
    try:
        for row in reader:
            line = first - 1 + reader.line_num
            if row:
                if len(row) != width:
                    raise InvalidInputError(f"line {line}: expected {width} fields, got {len(row)}")
                rows.append(row)
                ends.append(line)
                keep.extend(raw)
            raw.clear()  # a blank line: the readers skip it, and so must COPY
    except csv.Error as e:
        raise InvalidInputError(f"line {first - 1 + reader.line_num}: invalid CSV ({e})") from None
    text = "".join(keep)
    return rows, text if not text or text.endswith(("\n", "\r")) else text + "\n", ends


class _LineMap:
    """COPY row number (0-based) -> source line, kept per batch: arithmetic when each row is one line."""

    def __init__(self) -> None:
        self.starts = array("q")  # first COPY row of each batch
        self.firsts = array("q")  # first line of each batch
        self.explicit: dict[int, list[int]] = {}  # batch -> line of each row, when not one line per row
        self.count = 0

    def add(self, first: int, rows: int, ends: list[int] | None) -> None:
        if ends is not None:
            self.explicit[len(self.starts)] = ends
        self.starts.append(self.count)
        self.firsts.append(first)
        self.count += rows

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row: int) -> int:
        batch = bisect.bisect_right(self.starts, row) - 1
        offset = row - self.starts[batch]
        ends = self.explicit.get(batch)
        return ends[offset] if ends is not None else self.firsts[batch] + offset


def _placed(err: DbcliError, e: Exception, lines: Sequence[int], label: str, table: Table) -> DbcliError:
    """The server's error with the COPY row number turned back into the source line."""
    diag = getattr(e, "diag", None)
    m = _COPY_CONTEXT.search(getattr(diag, "context", None) or "")
    if not m or not 0 < int(m["line"]) <= len(lines):
        return err
    where = f"{label} {lines[int(m['line']) - 1]}"
    column = (m["column"] or "").strip() or getattr(diag, "column_name", None)
    if column and column in table.columns:
        where += f", column {column}"
    message = getattr(diag, "message_primary", None) or err.message
    return type(err)(f"{where}: {message}", hint=err.hint, sqlstate=err.sqlstate)


@dataclass(frozen=True)
class _Key:
    columns: tuple[str, ...]
    constraint: str | None  # ON CONFLICT ON CONSTRAINT name, else ON CONFLICT (columns)


def _conflict_target(gw: TableGateway, names: list[str], conflict_key: str | None) -> _Key:
    table = gw.table
    if conflict_key is None:
        if not table.primary_key:
            raise InvalidInputError(f"{table.display} has no primary key: give --conflict-key")
        key = _Key(tuple(table.primary_key), None)
    else:
        keys = unique_keys(gw.conn, table)
        by_name = {k.name: k for k in keys}
        wanted = tuple(c.strip() for c in conflict_key.split(","))
        found = by_name.get(conflict_key) or next((k for k in keys if set(k.columns) == set(wanted)
                                                   and not k.partial and not k.has_expression), None)
        if found is None:
            raise InvalidInputError(unknown_message("unique key", conflict_key, by_name, of=table.display))
        if found.partial or found.has_expression:
            raise InvalidInputError(f"unique index {found.name} is partial or on an expression: "
                                    "ON CONFLICT cannot target it by name (use a unique constraint)")
        key = _Key(found.columns, found.name if found.is_constraint else None)
    missing = [c for c in key.columns if c not in names]
    if missing:
        raise InvalidInputError(f"--upsert needs the key column(s) {', '.join(missing)} in the input")
    return key


def _merge(gw: TableGateway, cur: psycopg.Cursor[Any], stage: sql.Composable, names: list[str],
           key: _Key) -> tuple[int, int]:
    """INSERT ... SELECT from the staging table ON CONFLICT DO UPDATE; returns (inserted, updated)."""
    import psycopg
    from psycopg import sql

    from dbcli.postgres.connection import translate

    table = gw.table
    override = any(table.columns[n].identity == "a" for n in names)
    settable = [n for n in names if n not in key.columns and table.columns[n].identity != "a"]
    target = (sql.SQL("ON CONSTRAINT {}").format(sql.Identifier(key.constraint)) if key.constraint
              else sql.SQL("({})").format(_idents(key.columns)))
    action = (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in settable)
        if settable else sql.SQL("DO NOTHING"))
    query = sql.SQL(
        "WITH merged AS (INSERT INTO {table} ({cols}) {override}SELECT {cols} FROM {stage} ON CONFLICT {target} "
        "{action} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged").format(
            table=table.ident(), cols=_idents(names), stage=stage, target=target, action=action,
            override=sql.SQL("OVERRIDING SYSTEM VALUE " if override else ""))
    try:
        row = cur.execute(query).fetchone()
    except psycopg.errors.CardinalityViolation as e:
        raise InvalidInputError("the input has two rows with the same key: an upsert can change a row only "
                                "once", sqlstate=e.sqlstate) from e
    except psycopg.Error as e:
        raise translate(e) from e
    inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    return inserted, updated


def _idents(names: Sequence[str]) -> sql.Composable:
    from psycopg import sql

    return sql.SQL(", ").join(map(sql.Identifier, names))


# ---- export -----------------------------------------------------------------------------------

def export_table(uow: UnitOfWork, name: str, sink: IO[bytes], *, fmt: str = "csv",
                 filters: Sequence[Filter] = (), columns: Sequence[str] | None = None,
                 order_by: Sequence[str] = ()) -> int:
    """Write the table's (matching) rows to ``sink``; returns how many."""
    if fmt not in EXPORT_FORMATS:
        from dbcli.errors import UsageError

        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    gw = uow.table(name)
    if gw.enc is not None and set(columns or gw.table.columns) & gw.encrypted:
        return _export_rows(gw, sink, fmt, filters, columns, order_by)
    return _export_copy(gw, sink, fmt, filters, columns, order_by)


def _export_copy(gw: TableGateway, sink: IO[bytes], fmt: str, filters: Sequence[Filter],
                 columns: Sequence[str] | None, order_by: Sequence[str]) -> int:
    from psycopg import sql

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
            if fmt == "json":
                _json_array(copy, sink)
            else:
                for chunk in copy:
                    sink.write(chunk)
        return max(cur.rowcount, 0)


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
    from dbcli.output import Output

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
