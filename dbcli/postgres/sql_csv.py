"""``dbcli sql -f csv`` of a read-only query through ``COPY (query) TO STDOUT``: no Python work per row.

The rows path prints each value in Python's form (``true``, ``2024-05-01T10:00:00+00:00``,
``1.0E-7``, NULL and the empty string both as an empty cell); COPY prints PostgreSQL's. So the
query is wrapped in a SELECT that gives each column the rows path's text on the server, and only
when every column's type has such a form: integers, text, booleans, UUIDs, numerics, dates and
timestamps. Any other type (floats, JSON, arrays, intervals, bytea...), a result of one
column, or a statement that cannot be a subquery keeps the rows path, so the output is the same
either way (what still differs is documented in docs/sql.md).

COPY takes no bound parameters: ``--param`` values are merged client-side with psycopg's quoting
(``ClientCursor.mogrify``), which gives the server the same untyped literals server-side binding
would. The statement still runs in the run's READ ONLY transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO, Any

import psycopg
from psycopg import sql

from dbcli.postgres.copy_out import copy_to

_FIRST_WORDS = ("select", "with", "values", "table")
_TEXT = {25, 1043, 19}  # text, varchar, name
_AS_IS = {20, 21, 23, 26, 2950}  # int8, int2, int4, oid, uuid: the same text in Python and PostgreSQL
_BOOL, _NUMERIC, _DATE, _TIMESTAMP, _TIMESTAMPTZ = 16, 1700, 1082, 1114, 1184

# Python writes a Decimal below 1e-6 in scientific notation ('1.0E-7', '0E-7'): the same on the server
_SMALL_DECIMAL = (
    "CASE WHEN scale({c}) > 6 AND abs({c}) < 0.000001 THEN "
    "CASE WHEN {c} < 0 THEN '-' ELSE '' END || left({d}, 1) || "
    "CASE WHEN length({d}) > 1 THEN '.' || substr({d}, 2) ELSE '' END || "
    "'E' || (length({d}) - 1 - scale({c}))::text ELSE {c}::text END")
_DIGITS = "coalesce(nullif(ltrim(replace(abs({c})::text, '.', ''), '0'), ''), '0')"
# datetime.isoformat(): a T, microseconds only when there are some (all six digits), the offset as
# +HH:MM[:SS]. The JSON form ({j}: to_json's text, quotes included, computed once a row) is that
# already unless its fraction lost trailing zeros or its offset has seconds (another length):
# those take to_char (three times slower). Outside the years Python has (infinity, BC, after
# 9999: an error on the rows path) PostgreSQL's own text.
_JSON_FORM = "CASE WHEN length({j}) IN ({lengths}) THEN btrim({j}, '\"') ELSE {slow} END"
_IN_RANGE = "CASE WHEN {c} >= '0001-01-01' AND {c} < '10000-01-01' THEN {fmt} ELSE {c}::text END"
_ISO = ("to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
        "CASE WHEN to_char({c}, 'US') <> '000000' THEN to_char({c}, '.US') ELSE '' END")
_OFFSET = ("to_char({c}, 'TZH:TZM') || CASE WHEN extract(timezone FROM {c})::int % 60 <> 0 THEN "
           "':' || lpad((abs(extract(timezone FROM {c})::int) % 60)::text, 2, '0') ELSE '' END")
# the JSON text's lengths (quotes included) that need no fixing: 2024-05-01, 2024-05-01T10:00:00,
# 2024-05-01T10:00:00.123456, and the same with +HH:MM
_GOOD_LENGTHS = {_DATE: "12", _TIMESTAMP: "21, 28", _TIMESTAMPTZ: "27, 34"}

def streams(statement: str) -> bool:
    """Whether the statement may take the COPY path at all (a query that can be a subquery)."""
    words = statement.lstrip("( \t\r\n").split(None, 1)
    return bool(words) and words[0].lower() in _FIRST_WORDS


def stream_csv(conn: psycopg.Connection[Any], statement: str, params: Mapping[str, Any] | None,
               sink: IO[bytes] | Callable[[bytes], Any]) -> tuple[list[str], int] | None:
    """Write the statement's result to ``sink`` as the rows path's CSV; (columns, rows), or None
    (nothing written, nothing changed) when it must take the rows path."""
    query = psycopg.ClientCursor(conn).mogrify(statement, dict(params) if params else None)
    inner = sql.SQL(query)  # user SQL text, run read-only as the rows path would
    with conn.cursor() as cur:
        # a probe that reads no row: the result's names and types, or any error for the rows path to report
        cur.execute("SAVEPOINT dbcli_csv")
        try:
            cur.execute(sql.SQL("SELECT * FROM ({}\n) AS q LIMIT 0").format(inner))
        except psycopg.Error:
            cur.execute("ROLLBACK TO SAVEPOINT dbcli_csv")
            return None
        description = cur.description or []
        cur.execute("RELEASE SAVEPOINT dbcli_csv")
    names = [d.name for d in description]
    if not names or len(set(names)) != len(names):
        return None
    # with dates or timestamps, an inner level gives each column a plain name and computes their
    # JSON text once a row (OFFSET 0 keeps it a level of its own, not inlined into every use)
    nested = any(d.type_code in _GOOD_LENGTHS for d in description)
    exprs = [_expression(d.type_code, d.scale, sql.Identifier(f"c{i}" if nested else d.name), sql.Identifier(f"j{i}"))
             for i, d in enumerate(description)]
    # one column: Python writes "" for an empty cell alone on its line, which COPY cannot write
    if any(e is None for e in exprs) or len(names) == 1:
        return None
    source: sql.Composable = sql.SQL("({}\n) AS q").format(inner)  # the line break ends a trailing -- comment
    if nested:
        values = []
        for i, d in enumerate(description):
            values.append(sql.SQL("q.{} AS {}").format(sql.Identifier(d.name), sql.Identifier(f"c{i}")))
            if d.type_code in _GOOD_LENGTHS:
                values.append(sql.SQL("to_json(q.{})::text AS {}").format(sql.Identifier(d.name),
                                                                          sql.Identifier(f"j{i}")))
        source = sql.SQL("(SELECT {} FROM {} OFFSET 0) AS v").format(sql.SQL(", ").join(values), source)
    select = sql.SQL(", ").join(sql.SQL("{} AS {}").format(e, sql.Identifier(n))
                                for e, n in zip(exprs, names, strict=True))
    copy = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv, HEADER)").format(select, source)
    return names, copy_to(conn, copy, sink)


def _expression(oid: int, scale: int | None, c: sql.Identifier, j: sql.Identifier) -> sql.Composable | None:
    """The column's text as the rows path prints it, computed by the server (None: no such form);
    ``j`` names the column's JSON text, for the dates and timestamps."""
    def form(template: str, **parts: sql.Composable) -> sql.Composable:
        return sql.SQL(template).format(c=c, **parts)

    if oid in _AS_IS:
        return c
    if oid in _TEXT:
        return form("NULLIF({c}, '')")  # an empty string is an empty cell, as NULL is
    if oid == _BOOL:
        return form("{c}::text")
    if oid == _NUMERIC:
        if scale is not None and scale <= 6:
            return c
        return form(_SMALL_DECIMAL, d=form(_DIGITS))
    slow = {_DATE: "to_char({c}, 'YYYY-MM-DD')", _TIMESTAMP: _ISO, _TIMESTAMPTZ: _ISO + " || " + _OFFSET}.get(oid)
    if slow is None:
        return None
    return form(_JSON_FORM, j=j, lengths=sql.SQL(_GOOD_LENGTHS[oid]), slow=form(_IN_RANGE, fmt=form(slow)))
