"""The CSV import: the file's own text goes to ``COPY ... (FORMAT csv)`` in batches.

COPY checks the cells itself: its error (SQLSTATE and CONTEXT ``COPY t, line N, column c``) is
told as the client-side checks told it, on the source line (:mod:`dbcli.postgres.copy_csv_errors`),
so the client does little more than cut the text into batches of whole records and count their
lines: a batch without blank lines is neither parsed nor re-encoded (COPY numbers its lines as
the file does, :mod:`dbcli.postgres.csv_batches`), which keeps the throughput close to
``psql \\copy`` also when other processes want the CPU. ``--skip-bad`` keeps the
column-by-column checks of :mod:`dbcli.postgres.csv_checks` (it must find every bad line). A writer
thread sends one batch while the next is read.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter

from dbcli.errors import InvalidInputError
from dbcli.postgres.copy_csv_errors import csv_copy_error
from dbcli.postgres.copy_load import ImportResult, Load, idents
from dbcli.postgres.csv_batches import Batch, LineMap, csv_batch, csv_batches, csv_header, has_blank_line, line_ended
from dbcli.postgres.csv_checks import csv_column_check, records_regex
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.csv_rejects import Sifter, null_read
from dbcli.postgres.errors import translate
from dbcli.postgres.tables import TableGateway

CSV_BATCH_BYTES = 1 << 18  # text per COPY write: big enough to amortise, small enough to stream


def import_csv(gw: TableGateway, stream: IO[str], *, upsert: bool = False, conflict_key: str | None = None,
               progress: Callable[[int], None] | None = None, options: CsvOptions | None = None,
               columns: Sequence[str] | None = None, skip_bad: int | None = None) -> ImportResult:
    """The fast path for CSV: the file's own text goes to ``COPY ... (FORMAT csv)`` in batches.

    COPY reads and checks every cell; its first error is reported with the source line and
    column, worded as the client-side checks word it (:func:`dbcli.postgres.copy_csv_errors.csv_copy_error`),
    and nothing is loaded. CSV NULL rules are COPY's: an unquoted empty cell (or the ``--null``
    text) is NULL, a quoted one ("") the empty string, except in NOT NULL text columns
    (FORCE_NOT_NULL). Blank lines are skipped, as the csv module skips them.

    ``columns``: the file's columns in order (a header line, if any, is skipped). Without them
    and without a header, the table's columns in order (generated ones left out). ``skip_bad``:
    up to this many lines the client-side reading or checks refuse are left out and returned in
    the result's ``rejected`` (verbatim); one more fails the import. Those checks run on every
    batch then (:mod:`dbcli.postgres.csv_checks`).
    """
    options = options or CsvOptions()
    dialect = options.reader_kwargs()
    batches = csv_batches(stream, options.quote, CSV_BATCH_BYTES)
    head = next(batches, None)
    if head is None:
        return ImportResult(table=gw.table.display)
    head_lines = head[1]
    if not options.header:
        head_lines[0] = head_lines[0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
    header, first_line = csv_header((1, head_lines), dialect) if options.header else ([], 1)
    raw_header = head_lines[:first_line - 1]
    if columns:
        header = list(columns)
    elif not options.header:
        header = [c.name for c in gw.table.columns.values() if not c.generated]
    if len(set(header)) != len(header):
        raise InvalidInputError("--columns repeats a column name" if columns else
                                "line 1: the CSV header repeats a column name")
    gw.table.check_columns(header)
    lines = LineMap()
    load = Load(gw, header, upsert, conflict_key, lines)
    sifter = _sifter(gw, header, options, skip_bad, raw_header) if skip_bad is not None else None
    force = [n for n in header if gw.table.columns[n].is_string and gw.table.columns[n].not_null]
    copy_options = dataclasses.replace(options, header=False).copy_options()  # the header line is not sent
    if force:
        copy_options += sql.SQL(", FORCE_NOT_NULL ({})").format(idents(force))
    rest = head_lines[first_line - 1:]
    pending = [(first_line, rest, "".join(rest))] if rest else []
    try:
        with load.cur.copy(load.copy_statement(copy_options), writer=_queued_writer(load.cur)) as copy:
            for first, chunk, text in itertools.chain(pending, batches):
                batch = _batch(chunk, text, first, len(header), dialect, sifter, plain=len(lines) > 0)
                if not batch.rows:
                    continue
                if "\x00" in batch.text:
                    if sifter is None:
                        raise InvalidInputError(f"line {first}: NUL characters are not allowed in CSV text")
                    batch = sifter.sift(chunk, first)
                lines.add(first, batch)
                copy.write(batch.text)
                if progress is not None:
                    progress(len(lines))
    except psycopg.Error as e:
        raise csv_copy_error(translate(e), e, lines, gw.table, header, dialect) from e
    result = load.finish()
    if sifter is not None:
        result.rejected = sifter.rejected
    return result


def _sifter(gw: TableGateway, header: list[str], options: CsvOptions, limit: int, raw_header: list[str]) -> Sifter:
    """The client-side checks of ``--skip-bad``, which must find every bad line (COPY stops at the first)."""
    checks = [(header.index(name), name, check) for name, check in
              ((n, csv_column_check(gw.table.columns[n])) for n in header) if check is not None]
    if options.null:
        checks = [(i, name, null_read(check, options.null)) for i, name, check in checks]
    match = records_regex([gw.table.columns[n] for n in header], options)
    return Sifter(limit, len(header), options.reader_kwargs(), checks, raw_header, match)


def _batch(chunk: list[str], text: str, first: int, width: int, dialect: dict[str, Any], sifter: Sifter | None,
           plain: bool) -> Batch:
    """What goes to COPY of a batch (its lines, their text) starting on line ``first``.

    ``plain``: the text may go as it is, lines not told apart from records (COPY counts the
    line breaks inside quotes as lines, so its line numbers stay the file's), unless a line is
    blank (COPY would read it as a record). Not for the first records COPY reads, which are
    parsed: COPY does not count the line breaks inside quotes of its very first record.
    """
    if sifter is not None:
        return sifter.batch(chunk, line_ended(text), first)
    if plain and not has_blank_line(chunk):
        return Batch(len(chunk), line_ended(text))
    return csv_batch(chunk, first, width, dialect)[1]


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
