"""Point-in-time recovery, second round (tests/fix_pitr.py's archiving server): a restored copy that
takes over and archives into the same repository, then a second restore; the owner of the archive;
a broken incremental chain at verify; targets past the archived WAL; what a target time means."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbcli.backup.physical import instance, tools, wal
from tests.backup.test_backup_process import Running
from tests.backup.test_pitr import make_backup, restored_rows
from tests.fix_pitr import ArchivingPg
from tests.helpers import Result, can_mount, dbcli_in_shell


def copy_repo(pg: ArchivingPg, backup: dict[str, Any], to: Path) -> Path:
    """A repository of the test's own: the backup and the archived WAL from its start on (copies, not links)."""
    shutil.copytree(pg.repo / backup["id"], to / backup["id"])
    (to / "wal").mkdir(parents=True)
    start = wal.segment_number(wal.segment_of(backup["start_lsn"], 1))[1]
    for name in os.listdir(pg.repo / "wal"):
        if (wal.SEGMENT.match(name) and wal.segment_number(name)[1] >= start) or name.endswith(".history"):
            shutil.copy2(pg.repo / "wal" / name, to / "wal" / name)
    return to


def run_archiving(pg: ArchivingPg, data_dir: Path, repo: Path, statements: list[str]) -> None:
    """Start a restored copy with archiving into ``repo`` (it took over), run ``statements``, stop it."""
    import psycopg

    with open(data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write(f"archive_mode = 'on'\narchive_command = {instance.quote(wal.archive_command(repo))}\n")
    owner = tools.owner_of(data_dir) or tools.server_owner()
    socket_dir = Path(tempfile.mkdtemp(prefix="dbcli-tl-"))
    tools.give_to(socket_dir, owner)
    log = data_dir.with_name("copy.log")
    log.touch()
    tools.give_to(log, owner)
    pg_ctl = str(tools.server_bin(pg.major, pg.cluster.bin_dir) / "pg_ctl")
    tools.run("pg_ctl", [pg_ctl, "-D", str(data_dir), "-w", "-l", str(log), "-o",
                         f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}'", "start"],
              timeout=90, owner=owner)
    try:
        with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
            (segment,) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone() or ("",)
            conn.execute("SELECT pg_sleep(0.1)")
            for _ in range(300):
                if (repo / "wal" / segment).exists():
                    break
                conn.execute("SELECT pg_sleep(0.1)")
            assert (repo / "wal" / segment).exists(), conn.execute("TABLE pg_stat_archiver").fetchone()
    finally:
        tools.run("pg_ctl", [pg_ctl, "-D", str(data_dir), "-w", "-m", "fast", "stop"], timeout=90, owner=owner)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_a_second_restore_follows_a_copy_that_took_over(cli: Callable[..., Result], archiving_pg: ArchivingPg,
                                                        tmp_path: Path) -> None:
    """The first restore promotes with archiving off, so the server never queued its timeline history:
    once the copy archived into the repository, a second restore followed the old timeline (--latest
    missed the copy's rows) and promoted to the same timeline number (its segments then collide)."""
    pg = archiving_pg
    pg.sql("CREATE TABLE pitr_tl (x int)")
    pg.write_config(tmp_path)
    backup = make_backup(cli)
    pg.sql("INSERT INTO pitr_tl VALUES (1)")
    pg.switch_wal()
    repo = copy_repo(pg, backup, tmp_path / "repo")
    pg.write_config(tmp_path, dir=str(repo), wal=False)

    first = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "first"), "-f", "json")
    assert first.exit_code == 0, first.stderr
    timeline = first.json()["timeline"]
    assert (tmp_path / "first" / "pg_wal" / "archive_status" / f"{timeline:08X}.history.ready").exists()
    run_archiving(pg, tmp_path / "first", repo, ["INSERT INTO pitr_tl VALUES (2)"])
    assert (repo / "wal" / f"{timeline:08X}.history").exists()

    second = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "second"), "-f", "json")
    assert second.exit_code == 0, second.stderr
    assert second.json()["timeline"] == timeline + 1
    assert sorted(restored_rows(pg, tmp_path / "second", "SELECT x FROM pitr_tl")) == [(1,), (2,)]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: an archive owned by another user")
def test_a_restore_leaves_the_archive_to_its_owner(cli: Callable[..., Result], archiving_pg: ArchivingPg,
                                                   tmp_path: Path) -> None:
    """As root, restore (and verify --restore-test) chowned the whole WAL archive to the embedded
    server's user: a server running as ``postgres`` could no longer archive into it."""
    pg = archiving_pg
    pg.write_config(tmp_path)
    backup = make_backup(cli)
    pg.switch_wal()
    repo = copy_repo(pg, backup, tmp_path / "repo")
    nobody = tools.pwd.getpwnam("nobody")
    for p in [repo / "wal", *(repo / "wal").iterdir()]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    pg.write_config(tmp_path, dir=str(repo), wal=False)
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "r"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert {p.stat().st_uid for p in [repo / "wal", *(repo / "wal").iterdir()]} == {nobody.pw_uid}
    assert (tmp_path / "r").stat().st_uid == nobody.pw_uid  # run as the archive's owner, who can read it


def test_a_target_past_the_archive_fails_and_leaves_nothing(cli: Callable[..., Result], archiving_pg: ArchivingPg,
                                                            tmp_path: Path) -> None:
    pg = archiving_pg
    pg.write_config(tmp_path)
    backup = make_backup(cli)
    pg.switch_wal()
    for option, value in (("--to-time", "2999-01-01T00:00:00Z"), ("--to-lsn", "FF/0")):
        res = cli("backup", "restore", "--physical", option, value, backup["id"], "--data-dir", str(tmp_path / "x"))
        assert res.exit_code == 8, res.stderr
        assert "recovery ended before configured recovery target was reached" in res.stderr
        assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_a_time_without_a_zone_is_utc_and_said_so(cli: Callable[..., Result], archiving_pg: ArchivingPg,
                                                  tmp_path: Path) -> None:
    """The server here runs in another zone: the target is read as UTC all the same, and the output
    shows the instant it recovered to (it showed the text as typed)."""
    pg = archiving_pg
    pg.write_config(tmp_path)
    pg.sql("CREATE TABLE pitr_zone (x int)")
    pg.sql("ALTER SYSTEM SET timezone = 'America/New_York'")
    pg.sql("SELECT pg_reload_conf()")
    try:
        make_backup(cli)
        pg.sql("INSERT INTO pitr_zone VALUES (1)")
        (between,) = pg.sql("SELECT (clock_timestamp() AT TIME ZONE 'UTC')::text")[0]
        pg.sql("SELECT pg_sleep(1)")
        pg.sql("INSERT INTO pitr_zone VALUES (2)")
        pg.switch_wal()
    finally:
        pg.sql("ALTER SYSTEM RESET timezone")
        pg.sql("SELECT pg_reload_conf()")
    res = cli("backup", "restore", "--physical", "--to-time", between, "--data-dir", str(tmp_path / "r"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["target"].startswith("time ") and res.json()["target"].endswith("+00:00")
    assert restored_rows(pg, tmp_path / "r", "SELECT x FROM pitr_zone") == [(1,)]


@pytest.mark.pg(">= 17")
def test_verify_finds_a_missing_link_of_an_incremental_chain(cli: Callable[..., Result],
                                                             archiving_pg: ArchivingPg, tmp_path: Path) -> None:
    """Without --restore-test, verify of an incremental backup whose full backup is gone said ok."""
    repo = tmp_path / "repo"
    archiving_pg.write_config(tmp_path, dir=str(repo), wal=False)
    full = make_backup(cli)
    incr = make_backup(cli, "--incremental")
    res = cli("backup", "verify", incr["id"], "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert {c["check"]: c["ok"] for c in res.json()}["chain"] is True
    shutil.rmtree(repo / full["id"])
    res = cli("backup", "verify", incr["id"], "-f", "json")
    assert res.exit_code == 8
    chain = [c for c in res.json() if c["check"] == "chain"]
    assert chain and chain[0]["ok"] is False and full["id"] in chain[0]["detail"]
    res = cli("backup", "restore", "--physical", "--latest", incr["id"], "--data-dir", str(tmp_path / "r"))
    assert res.exit_code == 6 and full["id"] in res.stderr
    assert not (tmp_path / "r").exists()


def test_a_full_repository_exits_74(archiving_pg: ArchivingPg, tmp_path: Path) -> None:
    """pg_basebackup's "No space left on device" was a generic failure (exit 1), not the documented 74."""
    if not can_mount(tmp_path):
        pytest.skip("cannot mount a small file system here")
    small = tmp_path / "small"
    small.mkdir()
    config = archiving_pg.write_config(tmp_path, dir=str(small), wal=False)
    done = dbcli_in_shell(f"mount -t tmpfs -o size=1m tmpfs {small}", ["-c", str(config), "backup", "create",
                                                                        "--physical"], namespace=True)
    assert done.returncode == 74, done.stderr
    assert "No space left on device" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_kill_during_a_restore_test_is_cleaned_by_the_next_verify(cli: Callable[..., Result],
                                                                    archiving_pg: ArchivingPg, tmp_path: Path) -> None:
    """verify --restore-test killed during recovery left its scratch copy of the cluster in the
    repository, with a server running on it, for ever: nothing removed ``.restore-test-*``."""
    repo = tmp_path / "repo"
    archiving_pg.write_config(tmp_path, dir=str(repo), wal=False)
    backup = make_backup(cli)
    run = Running(["backup", "verify", backup["id"], "--restore-test"], "recovery", tmp_path)
    run.wait_for("dbcli-test: paused at recovery")
    run.kill()
    (left,) = repo.glob(".restore-test-*")
    assert (left / "data.partial" / "postmaster.pid").exists()
    res = cli("backup", "verify", backup["id"], "--restore-test", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert not list(repo.glob(".restore-test-*"))


def test_kill_of_wal_receive_stops_its_pg_receivewal(archiving_pg: ArchivingPg, tmp_path: Path) -> None:
    """kill -9 of ``dbcli wal receive`` left pg_receivewal streaming on its own, holding the slot:
    the receive that systemd restarts then fails with "replication slot ... is active"."""
    archiving_pg.write_config(tmp_path, dir=str(tmp_path / "received"), wal=False)
    active = "SELECT active FROM pg_replication_slots WHERE slot_name = 'pitr_kill'"
    run = Running(["wal", "receive", "--slot", "pitr_kill"], None, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while archiving_pg.sql(active) != [(True,)]:
            assert run.proc.poll() is None and time.monotonic() < deadline, run.lines
            time.sleep(0.1)
        os.kill(run.proc.pid, signal.SIGKILL)  # dbcli alone, as the OOM killer would
        run.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while archiving_pg.sql(active) != [(False,)]:
            assert time.monotonic() < deadline, "pg_receivewal still streams after dbcli was killed"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        time.sleep(0.5)
        archiving_pg.sql("SELECT pg_drop_replication_slot('pitr_kill')")
