"""A PostgreSQL server started for a moment on a restored data directory: on a private socket
directory and no TCP address, with archiving off (a restored copy must not write into the archive
of the server it was copied from), stopped again once checked."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
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
from dbcli.tempdirs import make_locked, remove_stale

PORT = 5432  # names the socket file only: the server listens on no TCP address
SOCKET_DIR_PREFIX = "dbcli-rs-"


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


def watchdog(data_dir: Path, bin_dir: Path, owner: pwd.struct_passwd | None) -> subprocess.Popen[bytes]:
    """A process of its own that stops the server on ``data_dir`` once this process is gone: a
    ``kill -9`` of dbcli must not leave a recovering server running in ``DIR.partial``. It looks at
    /proc, not ``kill -0``: the server's user may not signal root's process, and would think it gone."""
    script = 'while [ -d "/proc/$0" ]; do sleep 1; done; exec "$1" -D "$2" -w -t 60 -m immediate stop'
    return subprocess.Popen(["sh", "-c", script, str(os.getpid()), str(bin_dir / "pg_ctl"), str(data_dir)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd="/", start_new_session=True, user=owner.pw_uid if owner else None,
                            group=owner.pw_gid if owner else None, extra_groups=[] if owner else None)


@contextmanager
def started(data_dir: Path, bin_dir: Path, log: Path, *, timeout: float,
            env: dict[str, str] | None = None) -> Iterator[Started]:
    """Start a server on ``data_dir`` until the block ends; waits until it accepts connections.
    As root it runs as the user owning ``data_dir`` (else ``tools.SERVER_USER``). ``env``: the
    server's environment (what its restore_command reads), else dbcli's."""
    owner = tools.owner_of(data_dir) or tools.server_owner()
    remove_stale(SOCKET_DIR_PREFIX, given_away=True)  # those of runs killed with -9
    socket_dir, socket_lock = make_locked(SOCKET_DIR_PREFIX)
    tools.give_to(socket_dir, owner)
    log.touch(mode=0o600)
    tools.give_to(log, owner)  # pg_ctl appends to it as the server's user
    options = (f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -c port={PORT} "
               "-c archive_mode=off")
    guard = watchdog(data_dir, bin_dir, owner)
    try:
        tools.run("pg_ctl", [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w", "-t",
                             str(int(timeout)), "-o", options, "start"], env=env, timeout=timeout + 30, owner=owner)
        yield Started(data_dir, socket_dir, log)
    finally:
        guard.kill()  # this run stops the server itself; the directory may be another run's next
        guard.wait()
        if embedded.running(data_dir) is not None or (data_dir / "postmaster.pid").exists():
            tools.run("pg_ctl", [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-w", "-t", "120", "-m", "fast",
                                 "stop"], timeout=180, owner=owner)
        for leftover in socket_dir.iterdir():
            leftover.unlink(missing_ok=True)
        socket_dir.rmdir()
        os.close(socket_lock)


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


# the settings recovery needs at least the backed-up server's values of (pg_control names: GUC names)
_CONTROL = {"max_connections": "max_connections", "max_worker_processes": "max_worker_processes",
            "max_wal_senders": "max_wal_senders", "max_prepared_xacts": "max_prepared_transactions",
            "max_locks_per_xact": "max_locks_per_transaction"}


def primary_settings(data_dir: Path, bin_dir: Path) -> list[str]:
    """postgresql.conf lines giving the restored server the backed-up server's values of ``_CONTROL``:
    a server given them on its command line (``-c``) has them in pg_control only, and recovery with
    lower ones aborts ("insufficient parameter settings"). None when pg_controldata is missing."""
    try:
        out = subprocess.run([str(bin_dir / "pg_controldata"), "-D", str(data_dir)], capture_output=True,
                             text=True, timeout=60, check=True, env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = []
    for line in out.splitlines():
        name, _, value = line.partition(" setting:")
        if name.strip() in _CONTROL and value.strip().isdigit():
            lines.append(f"{_CONTROL[name.strip()]} = {value.strip()}")
    return lines


def quote(text: str) -> str:
    """A postgresql.conf string value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


