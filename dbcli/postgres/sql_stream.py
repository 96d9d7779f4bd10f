"""``dbcli sql -f csv|jsonl|json`` of a read-only query, streamed by the server through COPY.

CSV is ``COPY (query) TO STDOUT (FORMAT csv, HEADER)``: PostgreSQL's own CSV, the bytes psql's
``\\copy`` and ``table export`` write. JSON lines and JSON arrays are ``row_to_json`` lines
(:mod:`dbcli.postgres.copy_json`), the forms ``table export`` writes. No Python work per row,
memory flat.

COPY takes no bound parameters: ``--param`` values are merged client-side with psycopg's quoting
(``ClientCursor.mogrify``), which gives the server the same untyped literals server-side binding
would. The statement is described first (parse only, nothing runs) for its columns: a statement
that returns no rows (``SELECT ... INTO``), or one that COPY cannot hold (a data-modifying
``WITH``: refused before anything runs, in a savepoint), takes the rows path, whose errors it
then has. It all runs in the run's READ ONLY transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO, Any

import psycopg
from psycopg import errors as pg
from psycopg import sql

from dbcli.errors import InvalidInputError
from dbcli.postgres.copy_json import JSON_FORMATS, JSON_TYPE_OIDS, copy_json
from dbcli.postgres.copy_out import copy_to, describe

STREAM_FORMATS = ("csv", *JSON_FORMATS)
_FIRST_WORDS = ("select", "with", "values", "table")


def streams(statement: str) -> bool:
    """Whether the statement may take the COPY path at all (a query that can be a subquery)."""
    words = statement.lstrip("( \t\r\n").split(None, 1)
    return bool(words) and words[0].lower() in _FIRST_WORDS


def unique_columns(columns: list[str]) -> list[str]:
    """``columns``, refused when a name comes twice (a row is a mapping of names to values)."""
    if len(set(columns)) != len(columns):
        dupe = next(c for c in columns if columns.count(c) > 1)
        raise InvalidInputError(f"the result has the column {dupe!r} twice", hint="give the columns distinct aliases")
    return columns


def stream(conn: psycopg.Connection[Any], statement: str, params: Mapping[str, Any] | None, fmt: str,
           sink: IO[bytes] | Callable[[bytes], Any]) -> tuple[list[str], int] | None:
    """Write the statement's result to ``sink`` in ``fmt``; (columns, rows), or None (nothing
    written, nothing run) when the statement must take the rows path."""
    query = psycopg.ClientCursor(conn).mogrify(statement, dict(params) if params else None)
    fields = describe(conn, query)
    if fields is None:
        return None
    names = unique_columns([name for name, _ in fields])
    inner = sql.SQL(query)  # user SQL text, run read-only as the rows path would
    held = _FirstHeld(sink if callable(sink) else sink.write)
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT dbcli_stream")
        try:
            if fmt == "csv":
                # the line break ends a -- comment the query may end with
                copy = sql.SQL("COPY ({}\n) TO STDOUT (FORMAT csv, HEADER)").format(inner)
                count = copy_to(conn, copy, held.write)
            else:
                compact = any(oid in JSON_TYPE_OIDS for _, oid in fields)
                count = copy_json(conn, inner, held.write, fmt, compact=compact)
        except pg.FeatureNotSupported:
            if held.started:
                raise
            # what COPY's query cannot hold (a data-modifying WITH): the rows path, and its errors
            cur.execute("ROLLBACK TO SAVEPOINT dbcli_stream")
            return None
    held.close()
    return names, count


class _FirstHeld:
    """The first write (the header, or a JSON array's ``[``, sent before the first row is made)
    held until more follows or the COPY ends well: an error before the first row (a timeout, a
    division by zero) prints nothing, as on the rows path."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self.out = write
        self.held: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if self.started:
            self.out(data)
        elif self.held is None:
            self.held = bytes(data)
        else:
            self.started = True
            self.out(self.held + data)

    def close(self) -> None:
        if not self.started and self.held is not None:
            self.out(self.held)
