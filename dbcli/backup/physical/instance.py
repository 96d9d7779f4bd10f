"""A PostgreSQL server started for a moment on a restored data directory: on a private socket
directory and no TCP address, with archiving off (a restored copy must not write into the archive
of the server it was copied from), stopped again once checked."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from dbcli.backup.physical import tools
from dbcli.errors import CheckFailedError, DbcliError, UnreachableError
from dbcli.postgres import embedded

PORT = 5432  # names the socket file only: the server listens on no TCP address


@dataclass
class Started:
    data_dir: Path
    socket_dir: Path
    log: Path

    def conninfo(self) -> str:
        return make_conninfo(host=str(self.socket_dir), port=str(PORT), user=embedded.SUPERUSER,
                             dbname="postgres", connect_timeout="10")


def log_tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    wanted = [line for line in text if "FATAL" in line or "PANIC" in line] or text
    return " | ".join(wanted[-lines:])


@contextmanager
def started(data_dir: Path, bin_dir: Path, log: Path, *, timeout: float) -> Iterator[Started]:
    """Start a server on ``data_dir`` until the block ends; waits until it accepts connections.
    As root it runs as the user owning ``data_dir`` (else ``tools.SERVER_USER``)."""
    owner = tools.owner_of(data_dir) or tools.server_owner()
    socket_dir = Path(tempfile.mkdtemp(prefix="dbcli-rs-"))
    tools.give_to(socket_dir, owner)
    log.touch(mode=0o600)
    tools.give_to(log, owner)  # pg_ctl appends to it as the server's user
    options = (f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -c port={PORT} "
               "-c archive_mode=off")
    tools.run("pg_ctl", [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w", "-t",
                         str(int(timeout)), "-o", options, "start"], timeout=timeout + 30, owner=owner)
    try:
        yield Started(data_dir, socket_dir, log)
    finally:
        if embedded.running(data_dir) is not None or (data_dir / "postmaster.pid").exists():
            tools.run("pg_ctl", [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-w", "-t", "120", "-m", "fast",
                                 "stop"], timeout=180, owner=owner)
        for leftover in socket_dir.iterdir():
            leftover.unlink(missing_ok=True)
        socket_dir.rmdir()


def stop_orphan(data_dir: Path, bin_dir: Path) -> None:
    """Stop a server left running on ``data_dir`` by a restore that was killed."""
    if (data_dir / "postmaster.pid").exists():
        with contextlib.suppress(DbcliError):
            tools.run("pg_ctl", [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-w", "-t", "60", "-m", "immediate",
                                 "stop"], timeout=90, owner=tools.owner_of(data_dir) or tools.server_owner())


def wait_promoted(server: Started, *, timeout: float) -> dict[str, object]:
    """Wait until recovery has ended (the server promoted itself); what it recovered to."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp(), "
                                   "timeline_id FROM pg_control_checkpoint()").fetchone()
                if row is not None and not row[0]:
                    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                    databases = conn.execute("SELECT count(*) FROM pg_database WHERE datallowconn").fetchone()
                    return {"last_transaction_time": row[1].isoformat() if row[1] else None,
                            "timeline": row[2], "lsn": lsn[0] if lsn else None,
                            "databases": databases[0] if databases else 0}
        except psycopg.OperationalError:
            if embedded.running(server.data_dir) is None and not _alive(server.data_dir):
                raise CheckFailedError(f"the restored server stopped during recovery: {log_tail(server.log)}",
                                       hint=f"its log: {server.log}") from None
        if time.monotonic() > deadline:
            raise UnreachableError(f"recovery did not finish within {timeout:.0f}s",
                                   hint=f"its log: {server.log}")
        time.sleep(0.2)


def _alive(data_dir: Path) -> bool:
    return (data_dir / "postmaster.pid").exists()


def quote(text: str) -> str:
    """A postgresql.conf string value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


