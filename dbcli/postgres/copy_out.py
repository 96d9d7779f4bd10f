"""``COPY ... TO STDOUT`` streamed to a byte sink at the speed libpq hands rows over.

The server sends one CopyData message per row. psycopg's ``Copy`` iterator runs its generator
and wait machinery for each of them (~1 µs a row, about as long as the server takes to make
it); this loop asks libpq for rows without blocking until its buffer is empty, joins them and
writes them in one call per network read, so the only Python work per row is one call and
one append. Memory stays flat: at most one read's worth of rows is held.

COPY takes no bound parameters: they are merged into the statement client-side with psycopg's
own quoting (``ClientCursor.mogrify``), as ``cursor.copy`` does. The statement goes out through the
extended protocol, which carries exactly one statement: text that a client-side tokenizer might
read differently from the server (``'a\\'`` with standard_conforming_strings) cannot smuggle a
second statement (a ``COMMIT; DELETE ...``) in.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from typing import IO, Any

import psycopg
from psycopg import pq, sql
from psycopg.errors import error_from_result

Query = str | bytes | sql.SQL | sql.Composed


def copy_to(conn: psycopg.Connection[Any], statement: Query, sink: IO[bytes] | Callable[[bytes], Any],
            params: Sequence[Any] | dict[str, Any] | None = None, *, timeout: float | None = None) -> int:
    """Run ``statement`` (a ``COPY ... TO STDOUT``) and write its output to ``sink``; the row count.

    ``sink`` is a byte stream or a ``write`` function. The connection's transaction stays open
    (the statement runs in it); a server error is raised as psycopg's error for it. Ctrl-C
    cancels the statement on the server before the interrupt goes on.
    """
    text = psycopg.ClientCursor(conn).mogrify(statement, params)
    write = sink if callable(sink) else sink.write
    pgconn = conn.pgconn
    pgconn.send_query_params(text.encode(conn.info.encoding), None)
    try:
        result = _first_result(pgconn, timeout)
        if result.status != pq.ExecStatus.COPY_OUT:
            _drain(pgconn)
            raise _error(conn, result)
        _pump(pgconn, write, timeout)
    except psycopg.Error:
        raise
    except BaseException:  # Ctrl-C, a reader gone (EPIPE), a full disk: stop the server's side too
        conn.cancel_safe(timeout=5)
        _abandon(pgconn)
        raise
    final = pgconn.get_result()
    _drain(pgconn)
    if final is None or final.status != pq.ExecStatus.COMMAND_OK:
        raise _error(conn, final)
    return int(final.command_tuples or 0)


def describe(conn: psycopg.Connection[Any], query: str) -> list[tuple[str, int]] | None:
    """The (name, type oid) of each column ``query`` returns, without running it (parse and
    describe only, as an unnamed statement); None for a statement that returns no rows. A bad
    statement raises psycopg's error for it; Ctrl-C cancels on the server."""
    pgconn = conn.pgconn
    try:
        pgconn.send_prepare(b"", query.encode(conn.info.encoding))
        _single(conn, pq.ExecStatus.COMMAND_OK)
        pgconn.send_describe_prepared(b"")
        result = _single(conn, pq.ExecStatus.COMMAND_OK)
    except psycopg.Error:
        raise
    except BaseException:
        conn.cancel_safe(timeout=5)
        _drain(pgconn)
        raise
    if result.nfields == 0:
        return None
    return [(bytes(result.fname(i) or b"").decode(conn.info.encoding), result.ftype(i))
            for i in range(result.nfields)]


def _single(conn: psycopg.Connection[Any], status: pq.ExecStatus) -> pq.abc.PGresult:
    result = _first_result(conn.pgconn, None)
    _drain(conn.pgconn)
    if result.status != status:
        raise _error(conn, result)
    return result


def _pump(pgconn: pq.abc.PGconn, write: Callable[[bytes], Any], timeout: float | None) -> None:
    get, consume, sock = pgconn.get_copy_data, pgconn.consume_input, pgconn.socket
    rows: list[Any] = []
    keep = rows.append
    while True:
        size, data = get(1)  # 1: never block; 0 means libpq's buffer is empty
        if size > 0:
            keep(data)
            continue
        if rows:
            write(b"".join(rows))
            rows.clear()
        if size < 0:  # -1: the copy is done; -2: an error, reported by get_result
            return
        _wait(sock, timeout)
        consume()


def _first_result(pgconn: pq.abc.PGconn, timeout: float | None) -> pq.abc.PGresult:
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        _wait(pgconn.socket, timeout)
    result = pgconn.get_result()
    if result is None:
        raise psycopg.OperationalError("the server sent no result for COPY")
    return result


def _wait(sock: int, timeout: float | None) -> None:
    # a statement_timeout ends a slow COPY on the server; this one only guards a lost connection
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        raise psycopg.OperationalError("no data from the server for COPY within the time limit")


def _abandon(pgconn: pq.abc.PGconn) -> None:
    """Read what is left of a cancelled COPY, so the connection can still roll back."""
    try:
        while pgconn.get_copy_data(0)[0] >= 0:
            pass
    except psycopg.Error:
        pass
    _drain(pgconn)


def _drain(pgconn: pq.abc.PGconn) -> None:
    """Read the results left; a COPY that only starts now (cancelled before it began) is read out."""
    try:
        while (result := pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.COPY_OUT:
                while pgconn.get_copy_data(0)[0] >= 0:
                    pass
    except psycopg.Error:  # a connection that broke meanwhile: its own error is raised by the caller
        pass


def _error(conn: psycopg.Connection[Any], result: pq.abc.PGresult | None) -> psycopg.Error:
    if result is None or result.status != pq.ExecStatus.FATAL_ERROR:
        message = str(conn.pgconn.get_error_message()).strip()
        return psycopg.OperationalError(message or "COPY ended without a result")
    return error_from_result(result, encoding=conn.info.encoding)
