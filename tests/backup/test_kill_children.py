"""dbcli alone killed with SIGKILL (a cron timeout): its PostgreSQL tools die with it, and the private
temporary directories it leaves behind go with the next run that makes one."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dbcli.child_process import die_with_parent
from tests.backup import test_backup_jobs as jobs_tests
from tests.backup import test_backup_process as process
from tests.fix_pg import PgServer
from tests.fix_pitr import ArchivingPg, make_backup
from tests.helpers import Result, write_config

password_role = process.password_role  # the fixture: a login role with a password and its database
scratch_root = jobs_tests.scratch_root  # the fixture: TMPDIR of the test, in this process and its children

pytestmark = pytest.mark.skipif(die_with_parent() is None or not Path("/proc/self/stat").exists(),
                                reason="needs Linux (PR_SET_PDEATHSIG, /proc)")


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (init may be slow to)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _child(parent: int, program: bytes, marker: bytes, run: process.Running, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = next((pid for pid, line in process._cmdlines().items()
                      if line.split(b"\0")[0].endswith(program) and marker in line
                      and process._parent(pid) == parent), None)
        if found is not None:
            return found
        assert time.monotonic() < deadline and run.proc.poll() is None, "".join(run.lines)
        time.sleep(0.01)


def test_pg_dump_dies_with_a_killed_backup_and_the_passfile_goes_next_run(
        pg_server: PgServer, password_role: tuple[str, str, str], tmp_path: Path, scratch_root: Path,
        cli: Callable[..., Result]) -> None:
    """pg_dump, waiting on a table lock, must not outlive ``kill -9`` of dbcli (before: it ran on,
    reparented to init, until the lock went); the passfile's directory the killed run left (0700,
    holding the password) is removed by the next run."""
    import psycopg

    role, password, db = password_role
    params = pg_server.params
    write_config(tmp_path / "dbcli.yaml", {"postgres": {
        "host": params["host"], "port": int(params.get("port", 5432)), "user": role, "password": password,
        "dbname": db}})
    blocker = psycopg.connect(pg_server.conninfo(db))
    try:
        blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        run = process.Running(["backup", "create"], None, tmp_path)
        pg_dump = _child(run.proc.pid, b"pg_dump", b"--format=custom", run)
        left = sorted(p.name for p in scratch_root.iterdir() if p.name.startswith("dbcli-pgpass-"))
        assert len(left) == 1
        os.kill(run.proc.pid, signal.SIGKILL)  # dbcli alone, not its process group
        run.proc.wait(10)
        deadline = time.monotonic() + 2
        while not _gone(pg_dump):
            assert time.monotonic() < deadline, "pg_dump outlived the dbcli that started it"
            time.sleep(0.02)
    finally:
        blocker.rollback()
        blocker.close()
    assert [p.name for p in scratch_root.iterdir() if p.name.startswith("dbcli-pgpass-")] == left  # stale now

    again = cli("-q", "backup", "create")
    assert again.exit_code == 0, again.stderr
    assert not [p for p in scratch_root.iterdir() if p.name.startswith("dbcli-pgpass-")]


def test_a_live_runs_private_directory_stays(scratch_root: Path) -> None:
    """Only directories no live process holds go: a run that is still using its passfile keeps it."""
    from dbcli.postgres.tools import libpq_connection
    from dbcli.tempdirs import remove_stale

    dead = scratch_root / "dbcli-pgpass-dead"
    dead.mkdir(mode=0o700)
    (dead / "pgpass").write_text("*:*:*:*:secret\n")
    with libpq_connection({"host": "h", "password": "pw"}) as (env, _arg):
        assert not dead.exists()
        passfile = Path(env["PGPASSFILE"])
        assert remove_stale("dbcli-pgpass-") == [] and passfile.is_file()
    assert not passfile.parent.exists()


def test_a_killed_restores_socket_directory_goes_with_the_next_restore(
        cli: Callable[..., Result], archiving_pg: ArchivingPg, tmp_path: Path, scratch_root: Path) -> None:
    """The private socket directory of the server a physical restore starts (``dbcli-rs-*``, given to
    the server's user when dbcli runs as root) stayed after a kill -9 of the restore."""
    archiving_pg.write_config(tmp_path)
    make_backup(cli)
    target = tmp_path / "restored"
    run = process.Running(["backup", "restore", "--physical", "--latest", "--data-dir", str(target)], "recovery",
                          tmp_path)
    run.wait_for("dbcli-test: paused at recovery")
    left = sorted(p.name for p in scratch_root.iterdir() if p.name.startswith("dbcli-rs-"))
    assert len(left) == 1
    run.kill()
    deadline = time.monotonic() + 30
    while (tmp_path / "restored.partial" / "postmaster.pid").exists():  # its watchdog stops the server
        assert time.monotonic() < deadline, "the server of the killed restore still runs"
        time.sleep(0.2)
    assert sorted(p.name for p in scratch_root.iterdir() if p.name.startswith("dbcli-rs-")) == left

    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(target))
    assert res.exit_code == 0, res.stderr
    assert not [p for p in scratch_root.iterdir() if p.name.startswith("dbcli-rs-")]
