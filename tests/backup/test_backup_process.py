"""backup create as a real process: SIGKILL at any point, the lock, no password in ps, mongorestore."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.backup import pause
from tests.fix_backup import MadeBackup
from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.helpers import write_config

ROOT = Path(__file__).resolve().parents[2]


class Running:
    """``dbcli ARGS`` in its own process group; with ``stage``, paused there for a minute (tests/backup/pause.py)."""

    def __init__(self, args: list[str], stage: str | None, cwd: Path) -> None:
        # the child imports tests.backup.pause from this checkout, whatever its working directory
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        command = ["-c", pause.CHILD, stage, "60"] if stage else ["-m", "dbcli"]
        self.proc = subprocess.Popen([sys.executable, *command, *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []
        self.out: list[str] = []
        # both pipes read by threads of their own: communicate() would race them for stderr
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None:
                self._join()
                pytest.fail(f"exited {self.proc.returncode} before {text!r}: {''.join(self.lines)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} within {timeout}s: {''.join(self.lines)}")
            time.sleep(0.02)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: dbcli and its pg_dump
        self.proc.wait(timeout=10)
        self._join()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        self._join()
        return self.proc.returncode, "".join(self.out), "".join(self.lines)


@pytest.mark.parametrize("stage", ["pg_dump", "mongo", "manifest"])
def test_sigkill_leaves_nothing_good_and_next_run_cleans_up(cli: Any, seeded: Any, tmp_path: Path,
                                                            stage: str) -> None:
    run = Running(["backup", "create"], stage, tmp_path)
    run.wait_for(f"dbcli-test: paused at {stage}")
    run.kill()
    root = seeded.data_dir / "backups"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".partial-")]
    assert len(leftovers) == 1
    listed = cli("backup", "list", "-f", "json")
    assert (listed.exit_code, listed.json()) == (0, [])
    assert cli("backup", "verify", "--latest").exit_code == 6

    again = cli("backup", "create", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["cleaned_leftovers"] == 1
    assert not [p for p in root.iterdir() if p.name.startswith(".partial-")]
    assert [r["status"] for r in cli("backup", "list", "-f", "json").json()] == ["ok"]


def test_second_create_exits_75_at_once_naming_the_holder(cli: Any, seeded: Any, tmp_path: Path) -> None:
    import socket

    first = Running(["backup", "create"], "locked", tmp_path)
    try:
        first.wait_for("dbcli-test: paused at locked")
        start = time.monotonic()
        second = cli("backup", "create")
        assert time.monotonic() - start < 5
        assert second.exit_code == 75
        root = seeded.data_dir / "backups"
        assert second.stderr.startswith(f"Error: another backup run holds {root / '.lock'} (backup create by "
                                        f"pid {first.proc.pid} on {socket.gethostname()} since ")
        assert second.stderr.endswith(" (hint: wait for it to finish)\n")
        pruning = cli("backup", "prune", "--keep-last", "1")
        assert pruning.exit_code == 75
    finally:
        first.kill()
    assert cli("-q", "backup", "create").exit_code == 0  # the lock died with its holder


@pytest.fixture
def password_role(pg_server: PgServer) -> Iterator[tuple[str, str, str]]:
    """(role, password, database): a login role with a password owning a small database."""
    import psycopg
    from psycopg import sql

    role, password, db = f"r_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}", f"t_{uuid.uuid4().hex[:12]}"
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role)))
    with psycopg.connect(pg_server.conninfo(db), user=role, password=password, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
    yield role, password, db
    pg_server.drop_database(db)
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _cmdlines() -> dict[int, bytes]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # the process may be gone already
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
    return found


def _parent(pid: int) -> int | None:
    try:
        # /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold spaces
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_no_password_in_ps_during_a_backup(pg_server: PgServer, password_role: tuple[str, str, str],
                                           tmp_path: Path) -> None:
    role, password, db = password_role
    params = pg_server.params
    write_config(tmp_path / "dbcli.yaml", {"postgres": {
        "host": params["host"], "port": int(params.get("port", 5432)), "user": role, "password": password,
        "dbname": db}})
    secret = password.encode()
    import psycopg

    blocker = psycopg.connect(pg_server.conninfo(db))  # holds a lock pg_dump waits for
    try:
        blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        run = Running(["backup", "create"], None, tmp_path)
        deadline = time.monotonic() + 30
        pg_dump_pid = None
        while pg_dump_pid is None:
            lines = _cmdlines()
            assert not [pid for pid, line in lines.items() if secret in line]
            # the dump itself, not the short-lived `pg_dump --version` that comes first
            pg_dump_pid = next((pid for pid, line in lines.items()
                                if line.split(b"\0")[0].endswith(b"pg_dump") and b"--format=custom" in line
                                and _parent(pid) == run.proc.pid), None)
            assert time.monotonic() < deadline and run.proc.poll() is None, "".join(run.lines)
            time.sleep(0.01)
        time.sleep(0.2)  # pg_dump is now blocked on the lock, with its connection open
        assert not [pid for pid, line in _cmdlines().items() if secret in line]
        environ = Path(f"/proc/{pg_dump_pid}/environ").read_bytes()
        assert secret not in environ and b"PGPASSWORD" not in environ and b"PGPASSFILE=" in environ
        assert f"user='{role}'".encode() in Path(f"/proc/{pg_dump_pid}/cmdline").read_bytes()
    finally:
        blocker.rollback()
        blocker.close()
    code, out, err = run.finish()
    assert code == 0, err
    assert password not in out + err


def _mongorestore() -> str | None:
    from dbcli.config.paths import cache_home

    for candidate in (os.environ.get("DBCLI_MONGORESTORE"), shutil.which("mongorestore"),
                      str(cache_home() / "mongo-tools" / "mongorestore")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.skipif(_mongorestore() is None, reason="no mongorestore binary (scripts/build-mongo-tools builds "
                    "one when the Go module proxy serves github.com/mongodb/mongo-tools; or set DBCLI_MONGORESTORE)")
def test_stock_mongorestore_reads_the_mongo_dump(made_backup: MadeBackup, mongo_server: MongoServer) -> None:
    target = f"t_{uuid.uuid4().hex[:12]}"
    src = made_backup.mongo_db
    proc = subprocess.run([str(_mongorestore()), f"--uri={mongo_server.uri}", "--gzip",
                           f"--dir={made_backup.root / made_backup.id / 'mongo'}",
                           f"--nsFrom={src}.*", f"--nsTo={target}.*"],
                          capture_output=True, text=True, timeout=120, check=False)
    client = mongo_server.client()
    try:
        assert proc.returncode == 0, proc.stderr
        for name in client[src].list_collection_names():
            assert client[target][name].count_documents({}) == client[src][name].count_documents({})
            assert (sorted(ix["name"] for ix in client[target][name].list_indexes())
                    == sorted(ix["name"] for ix in client[src][name].list_indexes()))
    finally:
        client.drop_database(target)
        client.close()


@pytest.fixture(params=[True, False], ids=["large-object", "no-large-object"])
def lo_backup(request: pytest.FixtureRequest, pg_server: PgServer, tmp_path: Path,
              cli: Any) -> Iterator[tuple[str, str, str]]:
    """(source db, empty target db, backup id): 200,000 rows and (or not) a large object, backed
    up, with profiles src and dst in ./dbcli.yaml."""
    import psycopg

    src, dst = pg_server.create_database(), pg_server.create_database()
    with psycopg.connect(pg_server.conninfo(src), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL)")
        conn.execute("INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g")
        if request.param:
            conn.execute("SELECT lo_from_bytea(0, 'a large object')")
    write_config(tmp_path / "dbcli.yaml", {
        "backup": {"dir": str(tmp_path / "backups")},
        "profiles": {"src": {"postgres": {"dsn": pg_server.conninfo(src)}},
                     "dst": {"postgres": {"dsn": pg_server.conninfo(dst)}}}})
    made = cli("-p", "src", "backup", "create", "-f", "json")
    assert made.exit_code == 0, made.stderr
    from dbcli.backup import store as backup_store

    manifest = backup_store.read_manifest(tmp_path / "backups" / made.json()["id"])
    assert manifest["postgres"]["large_objects"] is request.param
    yield src, dst, made.json()["id"]
    pg_server.drop_database(src)
    pg_server.drop_database(dst)


def _restored_objects(pg_server: PgServer, db: str) -> tuple[list[str], int]:
    """Tables in public and large objects of ``db``, once no session is left in it."""
    import psycopg

    deadline = time.monotonic() + 30
    with pg_server.admin() as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)).fetchone()[0]:
            assert time.monotonic() < deadline, "a session is still open in the target"
            time.sleep(0.05)
    with psycopg.connect(pg_server.conninfo(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return tables, conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]


def test_restore_killed_half_way_commits_nothing(lo_backup: tuple[str, str, str], pg_server: PgServer,
                                                 tmp_path: Path) -> None:
    """Only dbcli is killed (psql and pg_restore get SIGTERM with it): psql's input ends without a COMMIT."""
    _src, dst, backup_id = lo_backup
    run = Running(["-p", "src", "backup", "restore", backup_id, "--profile", "dst"], "pg_restore", tmp_path)
    run.wait_for("dbcli-test: paused at pg_restore")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.communicate(timeout=10)
    assert _restored_objects(pg_server, dst) == ([], 0)


def test_restore_is_one_transaction_with_or_without_large_objects(lo_backup: tuple[str, str, str], pg_server: PgServer,
                                                       tmp_path: Path, cli: Any) -> None:
    """pg_restore wraps large objects in their own BEGIN/COMMIT unless told the restore is one
    transaction: a count mismatch must still roll back everything, large object included."""
    from dbcli.backup import store as backup_store

    _src, dst, backup_id = lo_backup
    path = tmp_path / "backups" / backup_id
    manifest = backup_store.read_manifest(path)
    manifest["postgres"]["tables"][0]["rows"] += 1
    backup_store.write_manifest(path, {k: v for k, v in manifest.items() if k != "checksum"})
    refused = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst")
    assert refused.exit_code == 8
    assert refused.stderr.endswith("has 200000, the backup 200001; the postgres restore was rolled back\n")
    assert _restored_objects(pg_server, dst) == ([], 0)
    manifest["postgres"]["tables"][0]["rows"] -= 1
    backup_store.write_manifest(path, {k: v for k, v in manifest.items() if k != "checksum"})
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    assert restored.json() == [{"target": "postgres", "name": "public.big", "expected": 200000,
                                "restored": 200000, "ok": True}]
    assert _restored_objects(pg_server, dst)[0] == ["big"]


def test_a_damaged_table_of_contents_is_reported_as_damage(lo_backup: tuple[str, str, str], pg_server: PgServer,
                                                           tmp_path: Path, cli: Any) -> None:
    """psql chokes on the damaged SQL long before pg_restore ends: the checksum still gives the verdict."""
    _src, dst, backup_id = lo_backup
    dump = next((tmp_path / "backups" / backup_id / "postgres").iterdir())
    data = dump.read_bytes()
    at = data.index(b"CREATE TABLE public.big (")
    dump.write_bytes(data[:at + 24] + b")" + data[at + 25:])
    result = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst")
    assert result.exit_code == 8
    assert result.stderr == (f"Error: backup {backup_id} is damaged: postgres/{dump.name}: checksum mismatch "
                             "(hint: nothing was restored)\n")
    assert _restored_objects(pg_server, dst) == ([], 0)
