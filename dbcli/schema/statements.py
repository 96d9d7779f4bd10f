"""Where in a migration file a statement failed: the server's error cursor, or a diagnostic re-run.

The statement splitter serves that diagnosis only; migrations themselves always run unsplit.
"""

from __future__ import annotations

import contextlib
import re

import psycopg


def error_line(text: str, e: Exception) -> int | None:
    """Line in ``text`` of the server's error cursor (syntax errors and most analysis errors)."""
    diag = getattr(e, "diag", None)
    pos = getattr(diag, "statement_position", None) if diag is not None else None
    if not pos:
        return None
    # the server counts characters from 1 over the whole multi-statement string we sent
    return text.count("\n", 0, max(0, int(pos) - 1)) + 1


def locate(conn: psycopg.Connection, text: str, sqlstate: str | None) -> int | None:
    """Re-run the file statement by statement in a rolled-back transaction to find the failing one.

    Only for errors without a cursor position (constraint violations, missing relations in DDL).
    The split is used for this diagnosis only; the migration itself always runs unsplit.
    """
    statements = split_statements(text)
    if not statements:
        return None
    if len(statements) == 1:
        return text.count("\n", 0, statements[0][0]) + 1
    try:
        conn.execute("BEGIN")
        for start, end in statements:
            try:
                conn.execute(text[start:end])
            except psycopg.Error as e:
                if e.sqlstate != sqlstate:
                    return None
                pos = getattr(e.diag, "statement_position", None)
                offset = start + (int(pos) - 1 if pos else 0)
                return text.count("\n", 0, offset) + 1
        return None
    except psycopg.Error:
        return None
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")


def has_statement(text: str) -> bool:
    """Whether ``text`` holds SQL to run: not only comments, blank lines and empty ``;``."""
    return any(start >= 0 and text[start:end].rstrip(";").strip() for start, end in split_statements(text))


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each statement: start at its first token, end after its ``;``.

    Understands comments (``--``, nested ``/* */``), quoted strings (``''``, ``E'\\''``),
    quoted identifiers and dollar quoting. Not SQL-standard ``BEGIN ATOMIC`` bodies.
    """
    out: list[tuple[int, int]] = []
    i, n, first = 0, len(text), -1
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if c == "/" and text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if c.isspace():
            i += 1
            continue
        if first < 0:
            first = i
        if c == "'":
            backslash = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i = _skip_quoted(text, i, "'", backslash)
        elif c == '"':
            i = _skip_quoted(text, i, '"', False)
        elif c == "$" and (m := _DOLLAR.match(text, i)) and (i == 0 or not (text[i - 1].isalnum()
                                                                            or text[i - 1] == "_")):
            end = text.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif c == ";":
            out.append((first, i + 1))
            first = -1
            i += 1
        else:
            i += 1
    if first >= 0:
        out.append((first, n))
    return out


def _skip_block_comment(text: str, i: int) -> int:
    depth, i, n = 0, i, len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and text[i + 1] == quote:  # doubled quote inside
                i += 2
                continue
            return i + 1
        i += 1
    return n
