"""A psql child process used as a light PostgreSQL session: SQL in, one JSON value per line out.

``backup create`` talks to the server through it instead of psycopg: pg_dump cannot start before
the snapshot it dumps has been exported, psql is started and connected in about 10 ms, and this
process needs no driver for it (importing psycopg takes 100-150 ms; dbcli.postgres's modules still
load it today, for the connection parameters and the SQLSTATE mapping).

Values reach the SQL as psql variables (``:'name'`` is quoted by psql as a literal); identifiers
are quoted by the server (``format('%I')``) and the statements built from the catalog run through
``\\gexec``, so no SQL is assembled here.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from dbcli.child_process import die_with_parent, wait_exited
from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import DbcliError
from dbcli.postgres.errors import from_sqlstate, unreachable


class PsqlSession:
    """``psql`` reading a script from a pipe; ``query`` sends statements and reads their rows."""

    def __init__(self, psql: Path, env: dict[str, str], cfg: Config, conn_arg: str,
                 variables: dict[str, str] | None = None) -> None:
        """``conn_arg``: the ``--dbname=`` connection string (see dbcli.postgres.tools.libpq_connection)."""
        args = [str(psql), "--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--no-password",
                "--set=ON_ERROR_STOP=1", "--set=VERBOSITY=verbose", "--set=SHOW_CONTEXT=never"]
        args += [f"--set={name}={value}" for name, value in (variables or {}).items()]
        args.append(conn_arg)
        self.cfg = cfg
        self._err = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        try:
            # the rows are read back as UTF-8 JSON whatever encoding the profile's clients use
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                         env={**env, "PGCLIENTENCODING": "UTF8"}, preexec_fn=die_with_parent())
        except BaseException:
            self._err.close()
            raise
        self._serial = 0

    def send(self, script: str) -> str:
        """Send statements (one per line at most for each row they print); returns the end marker to read up to."""
        self._serial += 1
        marker = f"dbcli:end:{self._serial}"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{script}\n\\echo {marker}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self.failure() from None
        return marker

    def rows(self, marker: str) -> list[Any]:
        """The JSON values printed before ``marker``, one per line."""
        assert self.proc.stdout is not None
        out: list[Any] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self.failure()
            try:
                text = line.decode().rstrip("\n")
            except UnicodeDecodeError:
                # PGCLIENTENCODING=UTF8 converts every server encoding but SQL_ASCII, which passes bytes on
                raise DbcliError("the server sent names that are not UTF-8 (a SQL_ASCII database?): "
                                 "dbcli cannot record them") from None
            if text == marker:
                return out
            out.append(json.loads(text))

    def query(self, script: str) -> list[Any]:
        return self.rows(self.send(script))

    def failure(self) -> DbcliError:
        """The error psql stopped on, as dbcli reports a driver error."""
        code = wait_exited(self.proc, 10)
        if code is None:
            self.proc.kill()
            code = self.proc.wait()
        self._err.seek(0)
        text = redact_text(self._err.read().decode(errors="replace"))
        return psql_error(text, code, self.cfg)

    def close(self) -> None:
        """End the session (its read-only transaction goes with it)."""
        if self.proc.stdin:
            with suppress(BrokenPipeError):
                self.proc.stdin.close()
        if wait_exited(self.proc, 10) is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()

    def __enter__(self) -> PsqlSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None and self.proc.poll() is None:
            self.proc.kill()
        self.close()


def psql_error(stderr: str, code: int, cfg: Config | None = None) -> DbcliError:
    """The dbcli error for psql's (redacted) stderr: a server error by its SQLSTATE, else a failed connection."""
    # VERBOSITY=verbose prints "ERROR:  57014: canceling statement due to statement timeout"
    server = re.search(r"\b(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}): (.*)", stderr)
    if server:
        detail = re.search(r"^DETAIL:\s+(.*)", stderr, re.MULTILINE)
        return from_sqlstate(server.group(1), server.group(2).strip(),
                             detail.group(1).strip() if detail else None)
    connect = re.search(r"^psql: error: (.*)", stderr, re.MULTILINE)
    if connect:
        return unreachable(connect.group(1).strip(), cfg)
    # the server went away mid-session: no SQLSTATE, as psycopg's OperationalError has none
    lost = re.search(r"server closed the connection unexpectedly|connection to server was lost"
                     r"|could not receive data from server|no connection to the server", stderr)
    if lost:
        return unreachable(lost.group(0), cfg)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return DbcliError(f"psql failed (exit {code}): {lines[-1] if lines else 'no message'}")
