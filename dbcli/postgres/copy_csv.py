"""The fast path of a CSV import: the file's own text goes to ``COPY ... (FORMAT csv)`` in batches.

Each batch is checked column by column against the catalog types first (or in one match over
its text, :mod:`dbcli.postgres.csv_checks`), so a bad cell is reported with its line and column
before anything reaches the server; nothing is re-encoded, which keeps the throughput close to
``psql \\copy``. A writer thread sends one batch while the next is checked.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import itertools
import operator
import queue
import re
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter

from dbcli.errors import InvalidInputError
from dbcli.postgres.catalog import Column
from dbcli.postgres.copy_load import ImportResult, Load, idents, placed_error
from dbcli.postgres.csv_checks import REGEX_DELIMITERS, BadValue, ColumnCheck, csv_column_check, csv_field_regex
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.csv_rejects import Sifter
from dbcli.postgres.errors import translate
from dbcli.postgres.tables import TableGateway

CSV_BATCH_BYTES = 1 << 18  # text per COPY write: big enough to amortise, small enough to stream


def import_csv(gw: TableGateway, stream: IO[str], *, upsert: bool = False, conflict_key: str | None = None,
               progress: Callable[[int], None] | None = None, options: CsvOptions | None = None,
               columns: Sequence[str] | None = None, skip_bad: int | None = None) -> ImportResult:
    """The fast path for CSV: the file's own text goes to ``COPY ... (FORMAT csv)`` in batches.

    Each batch is parsed with the csv module first and checked column by column against the
    catalog types (:func:`dbcli.postgres.csv_checks.csv_column_check`), so a bad cell is reported with its
    line and column before anything reaches the server; nothing is re-encoded, which keeps the
    throughput close to ``psql \\copy``. CSV NULL rules are COPY's: an unquoted empty cell (or
    the ``--null`` text) is NULL, a quoted one ("") the empty string, except in NOT NULL text
    columns (FORCE_NOT_NULL).

    ``columns``: the file's columns in order (a header line, if any, is skipped). Without them
    and without a header, the table's columns in order (generated ones left out). ``skip_bad``:
    up to this many lines the client-side reading or checks refuse are left out and returned in
    the result's ``rejected`` (verbatim); one more fails the import.
    """
    options = options or CsvOptions()
    dialect = options.reader_kwargs()
    batches = _csv_batches(stream, options.quote)
    head = next(batches, None)
    if head is None:
        return ImportResult(table=gw.table.display)
    if not options.header and head[1]:
        head[1][0] = head[1][0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
    header, first_line = _csv_header(head, dialect) if options.header else ([], 1)
    raw_header = head[1][:first_line - head[0]]
    if columns:
        header = list(columns)
    elif not options.header:
        header = [c.name for c in gw.table.columns.values() if not c.generated]
    if len(set(header)) != len(header):
        raise InvalidInputError("--columns repeats a column name" if columns else
                                "line 1: the CSV header repeats a column name")
    gw.table.check_columns(header)
    lines = _LineMap()
    load = Load(gw, header, upsert, conflict_key, lines)
    checks = [(header.index(name), name, check) for name, check in
              ((n, csv_column_check(gw.table.columns[n])) for n in header) if check is not None]
    if options.null:
        checks = [(i, name, _null_read(check, options.null)) for i, name, check in checks]
    records = _records_regex([gw.table.columns[n] for n in header], options)
    force = [n for n in header if gw.table.columns[n].is_string and gw.table.columns[n].not_null]
    copy_options = dataclasses.replace(options, header=False).copy_options()  # the header line is not sent
    if force:
        copy_options += sql.SQL(", FORCE_NOT_NULL ({})").format(idents(force))
    sifter = Sifter(skip_bad, len(header), dialect, checks, raw_header) if skip_bad is not None else None
    pending = [(first_line, head[1][first_line - head[0]:])] if len(head[1]) > first_line - head[0] else []
    try:
        with load.cur.copy(load.copy_statement(copy_options), writer=_queued_writer(load.cur)) as copy:
            for first, chunk in itertools.chain(pending, batches):
                text = _batch_text(chunk)
                if records is not None and records(text):
                    count, ends = len(chunk), None  # one record a line, every cell valid: nothing to split
                else:
                    try:
                        count, text, ends = _checked(chunk, first, header, dialect, checks)
                    except InvalidInputError:
                        if sifter is None:
                            raise
                        count, text, ends = sifter.sift(chunk, first)
                    if not count:
                        continue
                if "\x00" in text:
                    if sifter is None:
                        raise InvalidInputError(f"line {first}: NUL characters are not allowed in CSV text")
                    count, text, ends = sifter.sift(chunk, first)
                lines.add(first, count, ends)
                copy.write(text)
                if progress is not None:
                    progress(len(lines))
    except psycopg.Error as e:
        raise placed_error(translate(e), e, lines, "line", gw.table) from e
    result = load.finish()
    if sifter is not None:
        result.rejected = sifter.rejected
    return result


def _checked(chunk: list[str], first: int, header: list[str], dialect: dict[str, Any],
             checks: list[tuple[int, str, ColumnCheck]]) -> tuple[int, str, list[int] | None]:
    """(rows, text to send, line of each row unless one a line) of a batch, every cell checked."""
    rows, text, ends = _csv_batch(chunk, first, len(header), dialect)
    if not rows:
        return 0, text, ends
    for position, name, check in checks:
        try:
            check(list(map(operator.itemgetter(position), rows)))
        except BadValue as e:
            where = ends[e.index] if ends else first + e.index
            raise InvalidInputError(f"line {where}, column {name}: {e}") from None
    return len(rows), text, ends


def _null_read(check: ColumnCheck, null: str) -> ColumnCheck:
    """The check of cells where the ``--null`` text means NULL (what an empty cell means by default)."""
    def check_with_null(values: Sequence[str]) -> None:
        check(["" if v == null else v for v in values])
    return check_with_null


def _batch_text(chunk: list[str]) -> str:
    """The lines as COPY gets them: a last line without its line break gets one (a CR-only file's
    last line ends in \r already, and COPY takes one line-break style per file)."""
    text = "".join(chunk)
    return text if text.endswith(("\n", "\r")) else text + "\n"


def _records_regex(columns: list[Column], options: CsvOptions | None = None) -> Callable[[str], Any] | None:
    """A match of a whole batch of one-line CSV records whose every cell passes its column's check.

    Most batches are like that, and one match over their text costs about a third of splitting
    them into cells with the csv module and checking those (bench/bench_tables.py); any batch it
    does not match (a bad cell, a quoted number, a line break inside quotes, a blank line) takes
    the full path, which reports or accepts it exactly. Not for one column: there a blank line
    would read as an empty cell, where the full path skips it.
    """
    options = options or CsvOptions()
    if options.delimiter not in REGEX_DELIMITERS or options.quote != '"' or options.escape not in (None, '"'):
        return None
    fields = []
    for col in columns:
        field = csv_field_regex(col, options.delimiter, options.null)
        if field is None:
            return None
        fields.append(field)
    if len(fields) < 2:
        return None
    return re.compile("(?:" + re.escape(options.delimiter).join(fields) + r"\r?\n)*+", re.ASCII).fullmatch


def _queued_writer(cur: psycopg.Cursor[Any], depth: int = 4) -> Any:
    """A COPY writer whose thread sends while the caller parses and checks the next batch.

    psycopg's own QueuedLibpqWriter queues up to 1024 buffers, so a reader faster than the
    server would pile the file up in memory; this one holds at most ``depth`` batches.
    """
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


def _csv_batches(stream: IO[str], quote: str = '"') -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of whole CSV records, about CSV_BATCH_BYTES of text each."""
    line_no = 1
    while True:
        chunk = stream.readlines(CSV_BATCH_BYTES)
        if not chunk:
            return
        # an odd number of quote characters means a quoted field runs on: read to its end
        quotes = sum(map(str.count, chunk, itertools.repeat(quote)))
        while quotes % 2:
            more = stream.readline()
            if not more:
                break  # unterminated: the parser reports it
            chunk.append(more)
            quotes += more.count(quote)
        yield line_no, chunk
        line_no += len(chunk)


def _csv_header(batch: tuple[int, list[str]], dialect: dict[str, Any]) -> tuple[list[str], int]:
    """The header's names and the line number where the data starts."""
    lines = iter(batch[1])
    reader = csv.reader(lines, **dialect)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        raise InvalidInputError(f"line 1: invalid CSV header ({e or 'empty'})") from None
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
    return header, 1 + reader.line_num


def _csv_batch(chunk: list[str], first: int, width: int,
               dialect: dict[str, Any] | None = None) -> tuple[list[list[str]], str, list[int] | None]:
    """Rows, the text to send and, unless row i is line ``first + i``, each row's line number."""
    dialect = dialect or {}
    try:
        rows = list(csv.reader(chunk, **dialect))
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

    reader = csv.reader(tap(), **dialect)
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
