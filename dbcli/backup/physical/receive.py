"""``dbcli wal receive``: stream WAL into the repository with pg_receivewal, for servers whose
archive_command cannot reach the repository (another machine). It runs until stopped (systemd, a
supervisor); a replication slot keeps the server from removing WAL it has not sent yet."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from pathlib import Path

from dbcli.backup.pg_tools import libpq_connection
from dbcli.backup.physical import server, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.store import private_dir
from dbcli.config.model import Config
from dbcli.postgres.params import conn_params

SLOT = "dbcli_wal"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child: a ``kill -9`` of dbcli must not leave pg_receivewal streaming on its own (holding
    the slot, so the next ``wal receive`` that systemd starts fails with "slot is active")."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def receive(cfg: Config, root: Path, *, slot: str = SLOT) -> int:
    """Run pg_receivewal into ``<root>/wal`` until it stops; its exit code (0 when stopped by a signal)."""
    server.check_can_back_up(server.facts(cfg), incremental=False)
    receivewal = tools.client(cfg, "pg_receivewal")
    directory = private_dir(wal_archive.wal_dir(root))
    with libpq_connection(conn_params(cfg)) as (env, conn_arg):
        tools.run("pg_receivewal", [str(receivewal), "--create-slot", "--if-not-exists", f"--slot={slot}",
                                    "--no-password", conn_arg], env=env, timeout=60)
        proc = subprocess.Popen([str(receivewal), "-D", str(directory), f"--slot={slot}", "--synchronous",
                                 "--no-loop", "--no-password", conn_arg], stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_die_with_parent)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # systemd's stop: the same clean exit as ^C
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # pg_receivewal's own way to stop: flush, fsync, exit
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0 if code < 0 else code
