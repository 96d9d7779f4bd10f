"""``dbcli wal receive``: stream WAL into the repository with pg_receivewal, for servers whose
archive_command cannot reach the repository (another machine). It runs until stopped (systemd, a
supervisor); a replication slot keeps the server from removing WAL it has not sent yet."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from dbcli.backup.physical import location, server, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.store import private_dir
from dbcli.child_process import die_with_parent
from dbcli.config.model import Config
from dbcli.errors import DbcliError, UnreachableError
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import libpq_connection

SLOT = "dbcli_wal"


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def receive(cfg: Config, root: Root, *, slot: str = SLOT) -> None:
    """Run pg_receivewal into the repository until it is stopped by a signal; a failure
    of pg_receivewal is one line and a documented code (4: the stream ended, the server went away;
    3: no replication rights; 74: the disk is full).

    Into an S3 repository, or with ``backup.encryption_key``, pg_receivewal writes into a local spool
    directory (``<data dir>/wal-spool``, 0700) and each completed segment is uploaded or moved into
    the archive as ``wal archive`` would, encrypted with the key (see upload_completed)."""
    server.check_can_back_up(server.facts(cfg), incremental=False)
    receivewal = tools.client(cfg, "pg_receivewal")
    key = cfg.backup.encryption_key
    direct = isinstance(root, Path) and key is None  # else spooled, then archived (uploaded or encrypted)
    directory = private_dir(wal_archive.wal_dir(root) if isinstance(root, Path) and direct
                            else cfg.data_dir / "wal-spool")
    with libpq_connection(conn_params(cfg)) as (env, conn_arg), tempfile.TemporaryFile() as err:
        tools.run("pg_receivewal", [str(receivewal), "--create-slot", "--if-not-exists", f"--slot={slot}",
                                    "--no-password", conn_arg], env=env, timeout=60)
        proc = subprocess.Popen([str(receivewal), "-D", str(directory), f"--slot={slot}", "--synchronous",
                                 "--no-loop", "--no-password", conn_arg], stdin=subprocess.DEVNULL, env=env,
                                # a kill -9 of dbcli must not leave it streaming, holding the slot
                                stderr=err, preexec_fn=die_with_parent())
        uploader = None
        if not direct:
            # an upload that fails stops pg_receivewal the clean way: the run then exits with the upload's error
            uploader = Uploader(root, directory, lambda: proc.send_signal(signal.SIGINT), key)
            uploader.start()
        previous = signal.signal(signal.SIGTERM, _interrupt)  # systemd's stop: the same clean exit as ^C
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # pg_receivewal's own way to stop: flush, fsync, exit
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            code = 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            if uploader:
                uploader.stop()
        if code > 0:
            err.seek(0)
            raise stopped(code, err.read().decode(errors="replace"))


def stopped(code: int, stderr: str) -> DbcliError:
    """pg_receivewal's failure as a DbcliError; an unexplained end of the stream is exit 4."""
    failure = tools.failure("pg_receivewal", code, stderr)
    if type(failure) is DbcliError:
        return UnreachableError(f"pg_receivewal stopped streaming: {failure.message.split(': ', 1)[-1]}",
                                hint="the server went away or ended replication; the supervisor restarts "
                                "dbcli wal receive, which resumes from the slot")
    return failure


class Uploader:
    """Archives the completed segments of the spool directory (to S3, or encrypted) every second, then
    removes all but the newest archived one (pg_receivewal resumes after the newest segment in its
    directory)."""

    def __init__(self, repo: Root, spool: Path, on_error: Callable[[], None], key: bytes | None = None) -> None:
        self.repo, self.spool, self.on_error, self.key = repo, spool, on_error, key
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dbcli-wal-upload", daemon=True)
        self.error: DbcliError | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.upload_completed()  # what pg_receivewal completed as it stopped
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.upload_completed()
            except DbcliError as e:
                # the run ends with it (one line, its exit code) rather than streaming on into a spool
                # nobody uploads (the client refuses every request once the endpoint was down):
                # the supervisor starts it again, and the new run uploads the spool first
                self.error = e
                self.on_error()
                return

    def upload_completed(self) -> list[str]:
        names = sorted(p.name for p in self.spool.iterdir()
                       if wal_archive.ARCHIVABLE.match(p.name) and not p.name.endswith(".partial"))
        for name in names:
            location.archive(self.repo, self.spool / name, name, self.key)
        segments = [n for n in names if wal_archive.SEGMENT.match(n)]
        for name in segments[:-1]:
            (self.spool / name).unlink(missing_ok=True)
        return names
