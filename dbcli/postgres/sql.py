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
  files), the large-object writers (allowed read-only before PostgreSQL 16) and the functions
  that run SQL text given as a value (``query_to_xml``, ``ts_stat``...) are refused before
  anything runs; the text is read as the server reads it (nested comments, ``$$`` quotes,
  ``U&"..."`` names), so none of them hides in what looks like a comment or a string.

This module imports psycopg: the CLI loads it only for ``dbcli sql``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from psycopg import errors as pg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.errors import ConflictError, InvalidInputError, UsageError
from dbcli.postgres import connection as postgres
from dbcli.postgres import sql_stream
from dbcli.postgres.errors import matches, translate

# one token of SQL text: comments, literals and quoted names are skipped whole, so a ';' or a
# keyword inside them is not taken for one. Read as the server reads it: a -- comment ends at \r
# too, block comments nest (_tokens finds their end; the regex only their start), a $$ quote's
# tag may be empty, and names and tags may hold any non-ASCII character.
# Letters, '_' and every non-ASCII character, written as "not the other ASCII characters":
# the same set as [A-Za-z_\x80-\U0010ffff], but re compiles a range up to U+10FFFF into a
# table, which cost ~20 ms of every `dbcli sql` run's start-up for the two lexers below
_NAME_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"
_TAG_PART = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # and digits
_NAME_PART = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # and digits and '$'
_TOKEN = re.compile(r"""
    (?P<comment>--[^\n\r]*|/\*)
  | (?P<dollar>\$(?P<tag>(?:{start}{tag}*)?)\$[\s\S]*?\$(?P=tag)\$)
  | (?P<estring>[Ee]'(?:[^'\\]|''|\\[\s\S])*')
  | (?P<string>(?:[NnBbXx]|[Uu]&)?'(?:[^']|'')*')
  | (?P<uquoted>[Uu]&"(?:[^"]|"")*")
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>{start}{name}*)
  | (?P<semi>;)
  | (?P<other>[\s\S])
""".replace("{start}", _NAME_START).replace("{tag}", _TAG_PART).replace("{name}", _NAME_PART), re.X)
# the same, with backslash escapes in every string (standard_conforming_strings off, which a
# statement can set): names are looked for under both readings, so text the server reads as code
# is never taken for a string
_TOKEN_ESCAPES = re.compile(_TOKEN.pattern.replace("(?P<string>(?:[NnBbXx]|[Uu]&)?'(?:[^']|'')*')",
                                                   "(?P<string>(?:[NnBbXx]|[Uu]&)?'(?:[^'\\\\]|''|\\\\[\\s\\S])*')"),
                            re.X)
_COMMENT_MARK = re.compile(r"/\*|\*/")
# statements that write outside the database, where a READ ONLY transaction does not look
_REFUSED_FIRST = {"copy": "COPY (it can write server files or run programs)",
                  "do": "DO blocks (they can run COPY or functions with side effects)"}
_REFUSED_NAMES = {"lo_export": "lo_export (it writes a server file)",
                  "lo_import": "lo_import (it reads a server file)"}
# large-object writes: PostgreSQL before 16 allows them in a read-only transaction
_REFUSED_NAMES.update({name: f"{name} (it writes a large object)" for name in (
    "lo_create", "lo_creat", "lo_unlink", "lo_put", "lo_from_bytea", "lo_truncate", "lo_truncate64",
    "lowrite")})
# functions that run SQL text given as a value, which no reading of the statement sees
_REFUSED_NAMES.update({name: f"{name} (it runs SQL text that dbcli cannot check)" for name in (
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "ts_stat", "ts_rewrite")})
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
    streamed: bool = False  # the rows went to the sink already (through COPY)


def split(text: str) -> list[str]:
    """The statements of ``text``, split at ``;`` outside literals and comments; empty ones dropped."""
    statements, start = [], 0
    for m in _tokens(text):
        if m.lastgroup == "semi":
            statements.append(text[start:m.start()])
            start = m.end()
    statements.append(text[start:])
    return [s.strip() for s in statements if _words(s)]


def _tokens(text: str, lexer: re.Pattern[str] = _TOKEN) -> Iterator[re.Match[str]]:
    """Each token but block comments, which run to their matching ``*/`` (they nest)."""
    pos = 0
    while pos < len(text):
        if text.find("/*", pos) < 0:  # the common case, at C speed
            yield from lexer.finditer(text, pos)
            return
        for m in lexer.finditer(text, pos):
            if m.group() == "/*":
                break
            yield m
        else:
            return
        depth, pos = 0, len(text)  # unterminated: the server refuses it; nothing in it is a word
        for mark in _COMMENT_MARK.finditer(text, m.start()):
            depth += 1 if mark.group() == "/*" else -1
            if depth == 0:
                pos = mark.end()
                break


def _words(statement: str, lexer: re.Pattern[str] = _TOKEN) -> list[str]:
    words = []
    for m in _tokens(statement, lexer):
        if m.lastgroup in ("word", "quoted"):
            words.append(m.group().lower())
        elif m.lastgroup == "uquoted":
            words.extend(_unicode_names(m.group()))
    return words


def _unicode_names(text: str) -> list[str]:
    """A ``U&"..."`` name read with each escape character it may use: ``\\`` or the one a
    UESCAPE clause names (any character but a hex digit, ``+``, a quote or a space)."""
    body = text[3:-1].replace('""', '"')
    escapes = {c for c in body if c not in string.hexdigits + "+'\"" and not c.isspace()} | {"\\"}
    def read(escape: str) -> str:
        e = re.escape(escape)
        return re.sub(rf"{e}(?:{e}|\+([0-9A-Fa-f]{{6}})|([0-9A-Fa-f]{{4}}))",
                      lambda m: chr(int(m[1] or m[2], 16)) if m[1] or m[2] else escape, body).lower()

    return sorted({read(escape) for escape in escapes})


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
    for lexer in (_TOKEN, _TOKEN_ESCAPES):
        words = [w.strip('"') for w in _words(statement, lexer)]
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
        timeout: float | None = None, sink: IO[bytes] | Callable[[bytes], Any] | None = None,
        fmt: str = "csv") -> SqlResult:
    """Run every statement of ``text`` in one transaction; the last one's result.

    Read-only runs are rolled back; with ``write`` the transaction commits and the tables it
    touched are listed in ``written`` (their cache versions are the caller's to bump: the cache
    is not loaded for a read-only run). ``sink``: where a read-only query's result goes in
    ``fmt`` (csv, jsonl or json), streamed by the server through COPY
    (:mod:`dbcli.postgres.sql_stream`; the result then says ``streamed`` and holds no rows).
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
            # a Ctrl-C's cancel that reaches the server before the statement starts is dropped
            # there, and a backend running a query does not notice its client gone: with the check
            # interval it ends the query within a second of dbcli's exit, whatever killed dbcli
            cur.execute("SELECT set_config('statement_timeout', %s, true), "
                        "set_config('client_connection_check_interval', '1s', true)",
                        (f"{int(timeout * 1000)}ms" if timeout else _current_timeout(cfg),))
            for statement in statements[:-1]:
                _execute(conn, cur, statement, params)
            streamed = None
            if sink is not None and not write and sql_stream.streams(statements[-1]):
                streamed = sql_stream.stream(conn, statements[-1], params, fmt, sink)
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
    columns = sql_stream.unique_columns([d.name for d in cur.description])
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
