"""Ad-hoc SQL (``dbcli sql``): statements split and run one by one, read-only unless asked to write.

Read-only mode relies on PostgreSQL's ``READ ONLY`` transaction, which refuses every data change
(INSERT/UPDATE/DELETE, in CTEs too, DDL, ``nextval``, ``lo_import``), and closes the routes it
leaves open:

- each statement goes through the extended protocol (one statement per message), and the
  transaction is checked after each: a ``COMMIT``/``ROLLBACK`` in the text ends the read-only
  transaction (having written nothing) and the run stops there, before the next statement;
- the timeout is set with a query first, so the transaction has its snapshot and a later
  ``SET TRANSACTION READ WRITE`` is refused by the server;
- ``COPY`` (``TO PROGRAM``/to a server file), ``DO`` blocks, ``lo_export``/``lo_import`` (server
  files) and the large-object writers (allowed read-only before PostgreSQL 16) are refused before
  anything runs.

This module imports psycopg: the CLI loads it only for ``dbcli sql``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from psycopg import errors as pg
from psycopg import sql

from dbcli.cache import store as cache
from dbcli.config.model import Config
from dbcli.errors import ConflictError, InvalidInputError, UsageError
from dbcli.postgres import connection as postgres
from dbcli.postgres import sql_csv
from dbcli.postgres.errors import matches, translate

# one token of SQL text: comments, literals and quoted names are skipped whole, so a ';' or a
# keyword inside them is not taken for one
_TOKEN = re.compile(r"""
    (?P<comment>--[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$[\s\S]*?\$(?P=tag)\$)
  | (?P<string>[EeNnBbXxUu]?&?'(?:[^'\\]|''|\\[\s\S])*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<semi>;)
  | (?P<other>[\s\S])
""", re.X)
# statements that write outside the database, where a READ ONLY transaction does not look
_REFUSED_FIRST = {"copy": "COPY (it can write server files or run programs)",
                  "do": "DO blocks (they can run COPY or functions with side effects)"}
_REFUSED_NAMES = {"lo_export": "lo_export (it writes a server file)",
                  "lo_import": "lo_import (it reads a server file)"}
# large-object writes: PostgreSQL before 16 allows them in a read-only transaction
_REFUSED_NAMES.update({name: f"{name} (it writes a large object)" for name in (
    "lo_create", "lo_creat", "lo_unlink", "lo_put", "lo_from_bytea", "lo_truncate", "lo_truncate64",
    "lowrite")})
# statements that end the transaction: the run's statements must commit or roll back together
_TRANSACTION_CONTROL = {"begin", "start", "commit", "end", "rollback", "abort"}


@dataclass
class SqlResult:
    """The last statement's result: its columns and rows, or its status and row count."""

    columns: list[str] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""
    rowcount: int = -1
    written: list[str] = field(default_factory=list)
    streamed: bool = False  # the rows went to the csv sink already (through COPY)


def split(text: str) -> list[str]:
    """The statements of ``text``, split at ``;`` outside literals and comments; empty ones dropped."""
    statements, start = [], 0
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "semi":
            statements.append(text[start:m.start()])
            start = m.end()
    statements.append(text[start:])
    return [s.strip() for s in statements if _words(s)]


def _words(statement: str) -> list[str]:
    return [m.group().lower() for m in _TOKEN.finditer(statement) if m.lastgroup in ("word", "quoted")]


def check_transaction(statement: str) -> None:
    """Refuse a statement that would end the run's transaction (a ``ROLLBACK TO`` savepoint is fine)."""
    words = _words(statement)
    if not words:
        return
    ends = words[0] in _TRANSACTION_CONTROL and words[1:2] != ["to"]
    if ends or words[:2] in (["prepare", "transaction"], ["commit", "prepared"]):
        raise ConflictError(f"transaction control ({words[0].upper()}) is not allowed in dbcli sql",
                            hint="the statements already run in one transaction")


def check_read_only(statement: str) -> None:
    """Refuse what a READ ONLY transaction would let write outside the database."""
    words = [w.strip('"') for w in _words(statement)]
    if words and words[0] in _REFUSED_FIRST:
        raise ConflictError(f"{_REFUSED_FIRST[words[0]]} refused in read-only mode", hint="use --write")
    for name in words:
        if name in _REFUSED_NAMES:
            raise ConflictError(f"{_REFUSED_NAMES[name]} refused in read-only mode", hint="use --write")


def parse_params(items: list[str]) -> dict[str, str]:
    """``name=value`` pairs as a dict (values bound as text parameters, never spliced)."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param {item!r}: expected name=value")
        params[name.strip()] = value
    return params


def run(cfg: Config, text: str, params: Mapping[str, Any] | None = None, *, write: bool = False,
        timeout: float | None = None, csv_sink: IO[bytes] | Callable[[bytes], Any] | None = None) -> SqlResult:
    """Run every statement of ``text`` in one transaction; the last one's result.

    Read-only runs are rolled back; with ``write`` the transaction commits and the tables it
    touched have their cache versions bumped. ``csv_sink``: where a read-only query's result goes
    as CSV, through COPY where the output is the same (:mod:`dbcli.postgres.sql_csv`; the result
    then says ``streamed`` and holds no rows).
    """
    statements = split(text)
    if not statements:
        raise InvalidInputError("no SQL statement given")
    for statement in statements:
        check_transaction(statement)
        if not write:
            check_read_only(statement)
    conn = postgres.connect(cfg)
    try:
        conn.read_only = not write  # psycopg opens the transaction with BEGIN READ ONLY
        with conn.cursor() as cur:
            # a query first: the transaction takes its snapshot, so SET TRANSACTION READ WRITE fails
            cur.execute("SELECT set_config('statement_timeout', %s, true)",
                        (f"{int(timeout * 1000)}ms" if timeout else _current_timeout(cfg),))
            for statement in statements[:-1]:
                _execute(conn, cur, statement, params)
            streamed = None
            if csv_sink is not None and not write and sql_csv.streams(statements[-1]):
                streamed = sql_csv.stream_csv(conn, statements[-1], params, csv_sink)
            if streamed is not None:
                result = SqlResult(streamed[0], status=f"COPY {streamed[1]}", rowcount=streamed[1], streamed=True)
            else:
                _execute(conn, cur, statements[-1], params)
                result = _result(cur)
            if write:
                result.written = touched(cur)
                conn.commit()
            else:
                conn.rollback()
    except psycopg.Error as e:
        conn.close()
        raise _error(e, cfg, write) from None
    except BaseException:
        conn.close()
        raise
    conn.close()
    if result.written:
        cache.note_write(cfg, [f"postgres:{t}" for t in result.written])
    return result


def _current_timeout(cfg: Config) -> str:
    seconds = cfg.postgres.statement_timeout
    return f"{int(seconds * 1000)}ms" if seconds else "0"


def _execute(conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], statement: str,
             params: Mapping[str, Any] | None) -> None:
    # prepare=True: the extended protocol, exactly one statement per message
    cur.execute(statement.encode(), dict(params) if params else None, prepare=True)
    # a transaction end that check_transaction did not recognise (a procedure's COMMIT cannot run
    # in a transaction block): stop before the next statement runs outside the transaction
    if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise ConflictError("the statement ended the transaction: not allowed in dbcli sql",
                            hint="the statements already run in one transaction")


def _result(cur: psycopg.Cursor[Any]) -> SqlResult:
    status = cur.statusmessage or ""
    if cur.description is None:
        return SqlResult(None, status=status, rowcount=cur.rowcount)
    columns = [d.name for d in cur.description]
    if len(set(columns)) != len(columns):
        dupe = next(c for c in columns if columns.count(c) > 1)
        raise InvalidInputError(f"the result has the column {dupe!r} twice", hint="give the columns distinct aliases")
    rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    return SqlResult(columns, rows, status=status, rowcount=cur.rowcount)


def touched(cur: psycopg.Cursor[Any]) -> list[str]:
    """Tables this transaction inserted into, updated or deleted from (schema-qualified)."""
    cur.execute(sql.SQL("SELECT schemaname || '.' || relname FROM pg_stat_xact_user_tables "
                        "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY 1"))
    return [str(r[0]) for r in cur.fetchall()]


def _error(e: psycopg.Error, cfg: Config, write: bool) -> Exception:
    # 25xxx: a write refused, or an attempt to make the transaction read-write (SET TRANSACTION)
    if not write and matches(e, pg.ReadOnlySqlTransaction, pg.ActiveSqlTransaction):
        return ConflictError(f"refused in read-only mode: {str(e).strip().splitlines()[0]}",
                             hint="use --write", sqlstate=e.sqlstate)
    if isinstance(e, psycopg.ProgrammingError) and e.sqlstate is None and "COPY" in str(e):
        return InvalidInputError("COPY from or to the client is not supported by dbcli sql",
                                 hint="use dbcli table import or table export")
    return translate(e, cfg)
