"""``dbcli table import --jobs N``: the file cut into parts, COPYed over N connections.

The file is cut into ``PARTS_PER_JOB`` parts per connection, handed out in file order to
whichever connection is free, so a connection whose rows cost the server more (with sorted
keys, the one inserting below the other's keys misses the btree's rightmost-page fast path:
one fixed half took 25-35 % longer than the other) takes fewer parts, and both end together.
Each part goes through the single-job import (:func:`dbcli.postgres.copy_csv.import_csv` for
CSV, :func:`dbcli.postgres.copy_import.import_records` for JSON lines); a connection's parts
are COPYs in its one transaction. Every connection finishes before any commits, and if one part
fails all roll back, with the error of the earliest failing line (the parts after it are
cancelled and no more are handed out; the earlier ones run on, in case one of them fails earlier
in the file). The commit is :mod:`dbcli.postgres.parallel_commit`'s.

Two parts that hold the same unique key would wait on each other's uncommitted row for ever: a
watchdog sees a part blocked by a sibling and ends the import with that line's error instead.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from dbcli import readers
from dbcli.errors import ConflictError, DbcliError, InvalidInputError
from dbcli.postgres import connection
from dbcli.postgres import parallel_commit as tpc
from dbcli.postgres.copy_csv import import_csv
from dbcli.postgres.copy_import import import_file, import_records, open_source
from dbcli.postgres.copy_load import ImportResult
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.errors import translate
from dbcli.postgres.parallel_split import Part, ascii_framed, open_part, placed, refuse, split
from dbcli.postgres.tables import TableGateway, bump_sequences
from dbcli.postgres.uow import UnitOfWork

PARTS_PER_JOB = 2  # more parts balance better but each pays a set-up (its first batch parsed, a COPY)
WATCH_SECONDS = 0.25  # how often the coordinator looks for parts blocked by a sibling
_UNIQUE_WAIT = re.compile(r'while (?:inserting|checking uniqueness of) (?:index )?tuple [^\n]* '
                          r'in relation "(?P<index>[^"]+)"')


def import_file_jobs(uow: UnitOfWork, name: str, source: str, jobs: int, *, fmt: str | None = None,
                     upsert: bool = False, conflict_key: str | None = None,
                     progress: Callable[[int], None] | None = None, options: CsvOptions | None = None,
                     columns: Sequence[str] | None = None, skip_bad: int | None = None) -> ImportResult:
    """:func:`dbcli.postgres.copy_import.import_file` over up to ``jobs`` connections; all rows or none.

    The parts commit on their own connections (the unit of work only reads the catalog). What
    cannot be split is refused (exit 2) with the reason: stdin, a JSON array, --upsert,
    --skip-bad, encrypted columns, a CSV escape other than the quote, a UTF-16/32 file, a table
    with a constraint or trigger deferred to commit.
    """
    options = options or CsvOptions(delimiter="\t" if fmt == "tsv" else ",")
    kind = _kind(source, fmt, options)
    gw = uow.table(name)
    if gw.table.relkind not in ("r", "p"):
        raise InvalidInputError(f"{gw.table.display} is a {gw.table.kind}: import needs a table")
    for bad, reason in ((upsert, "--upsert merges one key at a time, which parts loaded side by side cannot do"),
                        (skip_bad is not None, "--skip-bad keeps one reject file in file order"),
                        (bool(gw.encrypted), f"{gw.table.display} has encrypted columns"),
                        (kind != "csv" and bool(columns), "--columns applies to csv and tsv only")):
        if bad:
            raise refuse(reason)
    deferred = _deferred(uow.conn, gw)
    if deferred:
        raise refuse(f"{gw.table.display}'s {deferred} is checked at commit, where one part's failure "
                     "could no longer roll back the others (and a key in two parts would wait for ever)")
    header = 1 if kind == "csv" and options.header else 0
    parts = split(source, jobs * PARTS_PER_JOB, quote=options.quote if kind == "csv" else None,
                  header_records=header)
    if len(parts) == 1 or (kind != "csv" and options != CsvOptions()):  # the latter: its usage error
        return import_file(uow, name, source, fmt=fmt, progress=progress, options=options, columns=columns)
    cfg = uow.cfg
    if cfg is None:
        raise refuse("it needs the profile's connection settings")
    names = list(columns or []) or (_header_names(source, options) if kind == "csv" and options.header else None)
    first_keys = _first_keys(source, parts[0], options.encoding) if kind == "jsonl" else None
    load = _Parts(cfg, gw, parts, min(jobs, len(parts)), progress)
    try:
        def one(part: Part, gw_k: TableGateway) -> ImportResult:
            with open_part(source, part, options.encoding) as stream:
                if kind == "jsonl":
                    return import_records(gw_k, _same_fields(readers.iter_records(stream, "jsonl"), first_keys,
                                                             part), kind="jsonl", progress=load.counter(part))
                if part.index == 0:
                    return import_csv(gw_k, stream, progress=load.counter(part), options=options, columns=columns)
                return import_csv(gw_k, stream, progress=load.counter(part), columns=names,
                                  options=dataclasses.replace(options, header=False))
        results = load.run(one)
        load.commit()
    finally:
        load.close()
    total = ImportResult(table=gw.table.display, rows=sum(r.rows for r in results),
                         inserted=sum(r.inserted for r in results))
    gw.wrote = total.inserted > 0
    return total


def _kind(source: str, fmt: str | None, options: CsvOptions) -> str:
    if source == "-":
        raise refuse("stdin cannot be cut into parts (give a file)")
    with open_source(source, "csv" if fmt == "tsv" else fmt, options.encoding) as (kind, _):
        pass
    if kind == "json":
        raise refuse("a JSON array cannot be cut into parts (JSON lines can)")
    if kind == "csv":
        if options.escape not in (None, options.quote):
            raise refuse("a CSV escape other than the quote hides where records end")
        if not ascii_framed(options.encoding, options.quote):
            raise refuse(f"{options.encoding} text cannot be cut as bytes")
    return kind


def _deferred(conn: psycopg.Connection[Any], gw: TableGateway) -> str | None:
    """The name of a constraint or trigger of the table that is checked at commit, if any."""
    row = conn.execute(
        "WITH t AS (SELECT r.oid FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace "
        "WHERE n.nspname = %(schema)s AND r.relname = %(name)s) "
        "SELECT 'constraint ' || conname FROM pg_constraint WHERE condeferred AND conrelid = (SELECT oid FROM t) "
        "UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tginitdeferred AND NOT tgisinternal "
        "AND tgrelid = (SELECT oid FROM t) LIMIT 1",
        {"schema": gw.table.schema, "name": gw.table.name}).fetchone()
    return str(row[0]) if row else None


def _header_names(source: str, options: CsvOptions) -> list[str]:
    with readers.open_input(source, options.encoding) as stream:
        header = next(csv.reader(stream, **options.reader_kwargs()), [])
    return [header[0].removeprefix("\ufeff"), *header[1:]] if header else []


def _first_keys(source: str, part: Part, encoding: str) -> set[str] | None:
    with open_part(source, part, encoding) as stream:
        first = next(readers.iter_records(stream, "jsonl"), None)
    return set(first[1]) if first else None


def _same_fields(records: Iterator[tuple[int, dict[str, Any]]], keys: set[str] | None,
                 part: Part) -> Iterator[tuple[int, dict[str, Any]]]:
    """A later part's records, its first one checked against the file's first record (each part
    checks the rest against its own first)."""
    first = next(records, None)
    if first is None:
        return
    if part.index and keys is not None and first[1].keys() != keys:
        missing, extra = sorted(keys - first[1].keys()), sorted(first[1].keys() - keys)
        detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                         f"extra {', '.join(extra)}" if extra else ""]))
        raise InvalidInputError(f"line {first[0]}: the fields differ from the first record's ({detail})")
    yield first
    yield from records


class _Parts:
    """``jobs`` connections and transactions loading the parts, a control connection, and the
    all-or-nothing commit."""

    def __init__(self, cfg: Any, gw: TableGateway, parts: list[Part], jobs: int,
                 progress: Callable[[int], None] | None) -> None:
        self.gw, self.parts, self.progress = gw, parts, progress
        self.counts = [0] * len(parts)
        self.blocked: set[int] = set()  # parts cancelled because a sibling's row held them
        self.lock = threading.Lock()
        self.next_part = 0
        self.stopped = False  # no part is handed out any more (one failed, or Ctrl-C)
        self.running: dict[int, int] = {}  # connection -> the part it loads
        self.group = tpc.new_group()
        self.control = connection.connect(cfg, autocommit=True)
        self.conns: list[psycopg.Connection[Any]] = []
        try:
            tpc.recover(self.control)  # what a killed dbcli left prepared, before its rows block ours
            self.two_phase = tpc.two_phase_slots(self.control) >= jobs
            for _ in range(jobs):
                self.conns.append(connection.connect(cfg))
        except BaseException:
            self.close()
            raise

    def counter(self, part: Part) -> Callable[[int], None] | None:
        if self.progress is None:
            return None
        progress = self.progress

        def count(n: int) -> None:
            with self.lock:
                self.counts[part.index] = n
                progress(sum(self.counts))
        return count

    def run(self, one: Callable[[Part, TableGateway], ImportResult]) -> list[ImportResult]:
        """Every part's COPY, the connections side by side; the earliest failing line's error if any fails."""
        pids = [c.info.backend_pid for c in self.conns]
        results: list[ImportResult] = []
        errors: dict[int, BaseException] = {}  # part index -> its error

        def load(conn_index: int) -> None:
            gw = TableGateway(self.conns[conn_index], self.gw.table)
            while True:
                with self.lock:
                    if self.stopped or self.next_part >= len(self.parts):
                        return
                    k = self.next_part
                    self.next_part += 1
                    self.running[conn_index] = k
                try:
                    result = one(self.parts[k], gw)
                except BaseException as e:  # this connection's transaction is lost: it loads no more
                    with self.lock:
                        errors[k] = e
                        self.stopped = True
                        del self.running[conn_index]
                    return
                with self.lock:
                    results.append(result)
                    del self.running[conn_index]

        with cf.ThreadPoolExecutor(len(self.conns), thread_name_prefix="dbcli-import") as pool:
            futures = [pool.submit(load, i) for i in range(len(self.conns))]
            cancelled: set[int] = set()
            try:
                while pending := [f for f in futures if not f.done()]:
                    cf.wait(pending, timeout=WATCH_SECONDS, return_when=cf.FIRST_COMPLETED)
                    with self.lock:
                        first = min(errors, default=None)
                        # the parts after the first failure cannot change the error reported
                        later = [(c, k) for c, k in self.running.items() if first is not None and k > first
                                 and k not in cancelled]
                    for c, k in later:
                        cancelled.add(k)
                        self._cancel([c])
                    if first is None:
                        self._unblock(pids)
            except BaseException:  # Ctrl-C: stop every COPY on the server, then roll back
                with self.lock:
                    self.stopped = True
                self._cancel(range(len(self.conns)))
                raise
        for future in futures:
            future.result()  # load() keeps its errors: only a bug gets here
        if errors:
            first = min(errors)
            raise self._error(first, errors[first])
        return results

    def _unblock(self, pids: list[int]) -> None:
        # a part waiting on a sibling's transaction id waits on its uncommitted row: a key both
        # parts hold (waits on the table's extension lock and the like pass by themselves)
        rows = self.control.execute(
            "SELECT DISTINCT w.pid FROM pg_locks w JOIN pg_locks h ON h.locktype = 'transactionid' "
            "AND h.transactionid = w.transactionid AND h.granted AND h.pid <> w.pid "
            "WHERE w.locktype = 'transactionid' AND NOT w.granted AND w.pid = ANY(%s) AND h.pid = ANY(%s)",
            (pids, pids)).fetchall()
        for (pid,) in rows:
            with self.lock:
                part = self.running.get(pids.index(pid))
            if part is not None:
                self.blocked.add(part)
                self._cancel([pids.index(pid)])

    def _cancel(self, indexes: Sequence[int] | range) -> None:
        for i in indexes:
            self.conns[i].cancel_safe(timeout=5)

    def _error(self, index: int, exc: BaseException | None) -> BaseException:
        cause = exc.__cause__ if isinstance(exc, DbcliError) else exc
        if isinstance(exc, psycopg.Error):
            exc = translate(exc)
        if not isinstance(exc, DbcliError):
            return exc or RuntimeError("a part failed")
        err = placed(exc, self.parts[index])
        if index not in self.blocked:
            return err
        where = err.message.split(":", 1)[0] if err.message.startswith("line ") else "a line"
        # the server says where the cancelled row waited: on a unique index, for a key another part holds
        m = _UNIQUE_WAIT.search(getattr(getattr(cause, "diag", None), "context", None) or "")
        if m is None:
            return ConflictError(f"{where}: the row waits on a row another part of the file wrote (a trigger or "
                                 "constraint ties them): load this file without --jobs")
        return ConflictError(f'{where}: duplicate key value violates unique constraint "{m["index"]}" (the same '
                             "key is on another line of the file)", sqlstate="23505")

    def commit(self) -> None:
        """All parts or none: prepared then committed in order (see the module docstring)."""
        if not self.two_phase:
            for conn in self.conns:
                conn.commit()
            self._sequences()
            return
        names = [tpc.gid(self.group, i + 1) for i in range(len(self.conns))]
        tpc.guard(self.control, self.group)
        try:
            prepared: list[str] = []
            try:
                for conn, name in zip(self.conns, names, strict=True):
                    tpc.prepare(conn, name)
                    prepared.append(name)
            except BaseException as e:  # an error, or Ctrl-C: no part stays prepared, holding its locks
                tpc.rollback_prepared(self.control, prepared)
                if isinstance(e, psycopg.Error):
                    raise translate(e) from e
                raise
            for name in names:
                tpc.commit_prepared(self.control, name)
        finally:
            tpc.release(self.control, self.group)
        self._sequences()

    def _sequences(self) -> None:
        # each part moved the sequences past its own rows; with all committed, past every row
        table = self.gw.table
        identity = [c.name for c in table.columns.values() if c.identity]
        if identity:
            bump_sequences(self.control, table, identity)

    def close(self) -> None:
        for conn in [*self.conns, self.control]:
            if not conn.closed:
                conn.close()  # a part not committed is rolled back by the server
