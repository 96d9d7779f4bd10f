"""Noticing a PostgreSQL server that stopped answering while pg_dump, pg_restore and psql work.

The libpq tools wait on the server without limit: ``statement_timeout`` is enforced by the server,
and a frozen one (SIGSTOP, a hung host) sends nothing, not even the cancellation; its kernel still
ACKs, so TCP keepalives do not end the wait (on a Unix socket there are none). The rule is the one
dbcli.postgres.watch applies to psycopg connections: when the tools have made no progress (the dump
file has not grown, psql has moved no bytes) for ``postgres.liveness_check`` seconds, a new
connection is opened. A server that accepts it, or refuses it in words (too many clients, a bad
password), is only busy and the wait goes on: a long COPY or index build is never cut. One that
does not answer within ``connect_timeout`` is stuck: the tools are killed (the callers' cleanup
then leaves nothing half-written) and the command ends with exit 4.

A thread watches, so that every blocking wait of the caller (a pipe read or write, a process
wait) is covered without changing it: the killed tools end those waits, and leaving
:class:`Watchdog` raises :class:`ServerStopped` in place of whatever error the kill caused.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType

from dbcli.errors import UnreachableError

# the longest pause between two looks at the progress: the check comes at most this late
_MAX_TICK = 0.5


class ServerStopped(UnreachableError):
    """The server stopped answering: the tools waiting on it were killed."""

    def __init__(self, check_after: float) -> None:
        super().__init__(
            f"PostgreSQL stopped answering: no progress for {check_after:g} s, and it did not accept "
            "a new connection within connect_timeout",
            hint="check the server; postgres.liveness_check sets how long dbcli waits before checking")


def server_answers(params: dict[str, str]) -> bool:
    """True unless a new connection (libpq keyword ``params``) gets no answer at all (timeout,
    refused, reset): the rule of dbcli.postgres.watch.server_answers, for keyword parameters."""
    # psycopg (~120 ms to import) only once a tool has stalled: `backup create` starts without it
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        psycopg.connect(make_conninfo(**params), autocommit=True).close()
    except psycopg.OperationalError as e:
        return e.sqlstate is not None  # the server said why: it is alive
    return True


def io_bytes(pid: int) -> int:
    """Bytes a process has read and written so far (pipes and sockets included; Linux's
    /proc/PID/io). 0 where that cannot be read: then the server is asked at every check."""
    try:
        with open(f"/proc/{pid}/io", "rb") as fh:
            fields = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
        return int(fields[b"rchar"]) + int(fields[b"wchar"])
    except (OSError, KeyError, ValueError):
        return 0


class Watchdog:
    """Kills the guarded processes when the server stops answering (see the module docstring).

    ``params``: the libpq keyword parameters to probe with; ``check_after``: seconds without
    progress before the server is asked (0: never). Progress is whatever ``follow`` was given
    changing value; until then there is none, and the server is asked every ``check_after``.
    """

    def __init__(self, params: dict[str, str], check_after: float) -> None:
        self.params = params
        self.check_after = check_after
        self.fired: ServerStopped | None = None
        self._measure: Callable[[], int] = lambda: 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dbcli-liveness", daemon=True)

    def guard(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """Kill ``proc`` too if the server stops answering; returns it."""
        with self._lock:
            if self.fired is not None:
                proc.kill()
            self._procs.append(proc)
        return proc

    def follow(self, measure: Callable[[], int]) -> None:
        """Progress from now on is ``measure()`` changing (a file size, bytes moved)."""
        self._measure = measure

    def raise_if_fired(self) -> None:
        if self.fired is not None:
            raise self.fired

    def __enter__(self) -> Watchdog:
        if self.check_after:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._done.set()
        if self._thread.is_alive():
            self._thread.join()  # at most one probe, bounded by connect_timeout
        if self.fired is not None and not isinstance(exc, KeyboardInterrupt):
            raise self.fired from None  # whatever the killed tools made go wrong, this is why

    def _run(self) -> None:
        tick = min(_MAX_TICK, self.check_after / 4)
        seen = self._measure()
        moved = time.monotonic()
        while not self._done.wait(tick):
            now_seen = self._measure()
            if now_seen != seen:
                seen, moved = now_seen, time.monotonic()
            elif time.monotonic() - moved >= self.check_after:
                if server_answers(self.params):
                    moved = time.monotonic()  # busy, not stuck: wait another check_after
                    continue
                with self._lock:
                    if self._done.is_set():
                        return  # the work ended meanwhile: nothing left to cut
                    self.fired = ServerStopped(self.check_after)
                    for proc in self._procs:
                        proc.kill()  # a no-op for one already reaped
                return
