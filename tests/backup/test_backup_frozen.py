"""A PostgreSQL that stops answering mid-backup (SIGSTOP) ends ``backup create`` and ``backup
restore`` with exit 4 within ``liveness_check`` + ``connect_timeout`` (issue 15, item 9), leaving
nothing half-written; a server that is only busy (a lock held longer than the check) is waited for.
The server is started for these tests alone: freezing the shared one would stall every other test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbcli.backup import store as backup_store
from tests.backup.test_backup_process import Running
from tests.helpers import write_config
from tests.postgres.test_frozen_server import frozen

CONNECT_TIMEOUT = 2
LIVENESS_CHECK = 2
MARGIN = 6  # start-up of the CLI, the watchdog's tick, the kills, a loaded machine
LIMIT = LIVENESS_CHECK + CONNECT_TIMEOUT + MARGIN
ROWS = 1_500_000  # a dump and a restore that take a few seconds


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from dbcli.postgres import embedded

    data_dir = tmp_path_factory.mktemp("frozen-backup-pg") / "data"
    server = embedded.ensure_running(data_dir, "frozen")
    with _admin(server, "frozen") as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO big SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, %s) g", (ROWS,))
    yield server
    embedded.stop(data_dir)


def _admin(server: Any, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(**server.conninfo(dbname)), autocommit=True)


@pytest.fixture
def target(own_server: Any) -> Iterator[str]:
    with _admin(own_server, "frozen") as conn:
        conn.execute("DROP DATABASE IF EXISTS target WITH (FORCE)")
        conn.execute("CREATE DATABASE target")
    yield "target"
    with _admin(own_server, "frozen") as conn:
        conn.execute("DROP DATABASE IF EXISTS target WITH (FORCE)")


@pytest.fixture
def config(tmp_path: Path, own_server: Any) -> Path:
    """Profiles src (the database with the big table) and dst (an empty one), checked every 2 s;
    no ``dsn``, so ``backup create`` starts without psycopg."""
    info = own_server.conninfo("frozen")

    def profile(dbname: str) -> dict[str, Any]:
        return {"postgres": {"embedded": False, "host": info["host"], "port": int(info["port"]),
                             "user": info["user"], "dbname": dbname, "connect_timeout": CONNECT_TIMEOUT,
                             "liveness_check": LIVENESS_CHECK}}

    return write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": str(tmp_path / "backups")},
                                                  "profiles": {"src": profile("frozen"), "dst": profile("target")}})


def _wait_for_copy(server: Any, dbname: str, run: Running) -> None:
    """Until a COPY runs in a database named like ``dbname``: pg_dump or psql is then moving the big
    table's rows."""
    with _admin(server, "frozen") as conn:
        deadline = time.monotonic() + 60
        while not conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname LIKE %s AND query LIKE 'COPY%%' "
                               "AND state = 'active'", (dbname,)).fetchone():
            assert run.proc.poll() is None and time.monotonic() < deadline, run.finish()
            time.sleep(0.02)


def _frozen_run(server: Any, args: list[str], dbname: str, cwd: Path, limit: float = LIMIT
                ) -> tuple[int, str, float]:
    """Run ``dbcli ARGS``, freeze the server once its COPY runs, and wait (at most ``limit``) for the end."""
    run = Running(args, None, cwd)
    try:
        _wait_for_copy(server, dbname, run)
        with frozen(server.pid):
            started = time.monotonic()
            code, _, err = run.finish(timeout=limit)
            took = time.monotonic() - started
    finally:
        if run.proc.poll() is None:
            run.kill()
    return code, err, took


def test_create_on_a_frozen_server_exits_4_and_keeps_nothing(own_server: Any, config: Path, tmp_path: Path) -> None:
    """pg_dump waited forever on a server frozen mid-dump."""
    code, err, took = _frozen_run(own_server, ["-p", "src", "backup", "create", "--target", "postgres"], "frozen",
                                  tmp_path)
    assert code == 4, err
    assert err.startswith("Error: PostgreSQL stopped answering: no progress for 2 s"), err
    assert len(err.splitlines()) == 1, err
    assert took < LIMIT
    root = tmp_path / "backups"
    # what any failed run keeps: its manifest, with the error, and no data
    assert [(b.status, b.manifest and b.manifest["files"]) for b in backup_store.list_backups(root)] == [("failed", {})]
    assert not list(root.glob(".partial-*"))
    assert not [p for p in root.rglob("*") if p.is_file() and p.name not in (backup_store.MANIFEST, ".lock")]


def test_create_waits_for_a_busy_server(own_server: Any, config: Path, tmp_path: Path) -> None:
    """A lock held three checks long stops pg_dump and the counts: the server answers, the backup is made."""
    with _admin(own_server, "frozen") as conn, conn.transaction():
        conn.execute("LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
        run = Running(["-p", "src", "backup", "create", "--target", "postgres", "-f", "json"], None, tmp_path)
        time.sleep(3 * LIVENESS_CHECK)
        assert run.proc.poll() is None, run.finish()
    code, out, err = run.finish(timeout=120)
    assert code == 0, err
    assert (json.loads(out)["status"], json.loads(out)["rows"]) == ("ok", ROWS)
    assert [b.status for b in backup_store.list_backups(tmp_path / "backups")] == ["ok"]


def _made_backup(cwd: Path) -> str:
    made = subprocess.run([sys.executable, "-m", "dbcli", "-p", "src", "backup", "create", "--target", "postgres",
                           "-q"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    (backup_id,) = [b.id for b in backup_store.list_backups(cwd / "backups")]
    return backup_id


def test_restore_into_a_frozen_server_exits_4_and_commits_nothing(own_server: Any, config: Path, target: str,
                                                                 tmp_path: Path) -> None:
    backup_id = _made_backup(tmp_path)
    code, err, took = _frozen_run(own_server, ["-p", "src", "backup", "restore", backup_id, "--profile", "dst"],
                                  target, tmp_path)
    assert code == 4, err
    assert err.startswith("Error: PostgreSQL stopped answering: no progress for 2 s"), err
    assert took < LIMIT
    with _admin(own_server, target) as conn:  # thawed: the restore's transaction was rolled back
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (target,)).fetchone() != (0,):
            assert time.monotonic() < deadline, "the restore's session is still open"
            time.sleep(0.05)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_restore_test_on_a_frozen_server_is_unverified(own_server: Any, config: Path, tmp_path: Path) -> None:
    """Exit 4 and ``unverified``: a stuck server says nothing about the backup."""
    backup_id = _made_backup(tmp_path)
    try:
        # the scratch database's drop waits connect_timeout more on the frozen server
        code, err, took = _frozen_run(own_server, ["-p", "src", "backup", "verify", backup_id, "--restore-test"],
                                      "dbcli\\_verify\\_%", tmp_path, LIMIT + CONNECT_TIMEOUT)
        assert code == 4, err
        assert err.startswith(f"Error: backup {backup_id} could not be verified: postgres dbcli_verify_"), err
        assert ": PostgreSQL stopped answering: no progress for 2 s" in err
        assert took < LIMIT + CONNECT_TIMEOUT
        verification = backup_store.read_verification(tmp_path / "backups" / backup_id)
        assert verification is not None and verification["state"] == "unverified", verification
    finally:
        with _admin(own_server, "frozen") as conn:  # left behind by the stuck server, empty
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbcli\\_verify\\_%'"
                                        ).fetchall():
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
