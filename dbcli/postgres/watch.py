"""Noticing a PostgreSQL server that stopped answering, without cutting one that is only busy.

``statement_timeout`` is enforced by the server: a server that is frozen (SIGSTOP, a hung host,
a dead NFS mount under its data directory) never sends the cancellation, and a plain psycopg
connection then waits for its reply forever. A fixed client-side deadline would also cut long
statements that are fine (an import's COPY, a slow report), so the check is a question asked
elsewhere instead: when a reply has not come for ``postgres.liveness_check`` seconds, dbcli opens a
second connection. A server that accepts it (or refuses it in words: too many clients, a bad
password) is alive and the wait goes on; one that does not answer within ``connect_timeout`` is
stuck, and the command ends with exit 4.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from dbcli.errors import UnreachableError

# psycopg raises this (private) class when a wait's timeout runs out; matched by name
_WAIT_TIMEOUT = "_WaitTimeout"


class ServerStopped(UnreachableError):
    """The server stopped answering: the connection was closed on it."""


class _NotTwice(logging.Filter):
    """psycopg logs "error ignored terminating" when closing a COPY fails after an error: after a
    ServerStopped that failure is expected, and the error itself is reported already."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(a, ServerStopped) for a in args)


logging.getLogger("psycopg").addFilter(_NotTwice())


class WatchedConnection(psycopg.Connection[Any]):
    """A connection whose waits check, every ``check_after`` seconds without a reply, that the
    server still accepts connections (``probe_conninfo``); see the module docstring."""

    check_after: float = 0.0  # 0: never check
    probe_conninfo: str = ""
    stopped: ServerStopped | None = None

    def watch(self, check_after: float, probe_conninfo: str) -> None:
        self.check_after = check_after
        self.probe_conninfo = probe_conninfo

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if self.stopped is not None:  # a COPY or a transaction finishing after the cut
            raise self.stopped
        if not self.check_after or timeout is not None:
            return super().wait(gen, interval, timeout)
        while True:
            try:
                return super().wait(gen, interval, self.check_after)
            except psycopg.OperationalError as e:
                if type(e).__name__ != _WAIT_TIMEOUT:
                    raise
            if not server_answers(self.probe_conninfo):
                self.close()  # the pending reply will never come; nothing more can be sent on it
                self.stopped = ServerStopped(
                    f"PostgreSQL stopped answering: no reply for {self.check_after:g} s, and it did not "
                    "accept a new connection within connect_timeout",
                    hint="check the server; postgres.liveness_check sets how long dbcli waits before checking")
                raise self.stopped


def server_answers(conninfo: str) -> bool:
    """True unless a new connection gets no answer at all (timeout, refused, reset)."""
    try:
        psycopg.connect(conninfo, autocommit=True).close()
    except psycopg.OperationalError as e:
        return e.sqlstate is not None  # the server said why: it is alive
    return True
