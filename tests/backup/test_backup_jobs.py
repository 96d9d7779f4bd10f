"""backup create --jobs / restore --jobs: pg_dump's directory format, pg_restore -j, and what they refuse."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.backup.test_backup import _pg_counts, _two_profiles, empty_target  # noqa: F401 (a fixture)
from tests.fix_backup import TEST_KEY
from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.helpers import write_config


def _src_db(seeded: Any) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(seeded.postgres.dsn)["dbname"])


@pytest.fixture
def jobs_backup(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer, mongo_server: MongoServer,
                empty_target: tuple[str, str]) -> tuple[str, Path]:  # noqa: F811
    """A ``--jobs 2`` backup of the seeded database (profile src; dst is empty): (id, its directory)."""
    _two_profiles(tmp_path, pg_server, (_src_db(seeded), seeded.mongo.database), empty_target, mongo_server,
                  {"backup": {"dir": str(tmp_path / "backups")}})
    made = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
    assert made.exit_code == 0, made.stderr
    backup_id = made.json()["id"]
    return backup_id, tmp_path / "backups" / backup_id


def test_jobs_round_trip(cli: Any, seeded: Any, pg_server: PgServer, jobs_backup: tuple[str, Path],
                         empty_target: tuple[str, str]) -> None:  # noqa: F811
    backup_id, directory = jobs_backup
    manifest = json.loads((directory / "manifest.json").read_text())
    pg = manifest["postgres"]
    assert pg["format"] == "directory" and pg["jobs"] == 2 and pg["file"].endswith(".dir")
    on_disk = {str(p.relative_to(directory)) for p in (directory / pg["file"]).iterdir()}
    assert "postgres/" + Path(pg["file"]).name + "/toc.dat" in on_disk
    assert on_disk <= set(manifest["files"])  # every file of the directory, with its SHA-256
    assert all(len(manifest["files"][f]["sha256"]) == 64 for f in on_disk)

    listed = cli("-p", "src", "backup", "list", "-f", "json").json()
    assert [(r["id"], r["status"]) for r in listed] == [(backup_id, "ok")]
    checked = cli("-p", "src", "backup", "verify", backup_id, "--restore-test", "-f", "json")
    assert checked.exit_code == 0, checked.stderr
    assert {c["check"] for c in checked.json()} >= {"checksum", "pg_restore", "restore-test"}

    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--jobs", "2", "-f", "json")
    # PostgreSQL 15/16 too: pg_restore 18's refused SET transaction_timeout is gone past (pg_restore_jobs)
    assert restored.exit_code == 0, restored.stderr
    assert all(r["ok"] for r in restored.json())
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, _src_db(seeded))
    # not empty any more: refused before pg_restore runs, as without --jobs
    again = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                "--jobs", "2")
    assert again.exit_code == 7, again.stderr
    # without --jobs, a directory backup is restored in one transaction, as any other
    replaced = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--drop", "-f", "json")
    assert replaced.exit_code == 0, replaced.stderr
    assert all(r["ok"] for r in replaced.json())
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, _src_db(seeded))


def test_restore_jobs_of_a_custom_format_backup(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                                mongo_server: MongoServer,
                                                empty_target: tuple[str, str]) -> None:  # noqa: F811
    _two_profiles(tmp_path, pg_server, (_src_db(seeded), seeded.mongo.database), empty_target, mongo_server,
                  {"backup": {"dir": str(tmp_path / "backups")}})
    made = cli("-p", "src", "backup", "create", "--target", "postgres", "-f", "json")
    assert made.exit_code == 0, made.stderr
    restored = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--jobs", "2",
                   "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, _src_db(seeded))


def test_restore_jobs_stops_at_an_error(cli: Any, seeded: Any, pg_server: PgServer,
                                        jobs_backup: tuple[str, Path], empty_target: tuple[str, str]) -> None:  # noqa: F811
    """A step pg_restore -j fails ends the restore with that error, on every server version (on
    PostgreSQL 15/16, where the refused SET transaction_timeout is gone past, the others are not)."""
    import psycopg

    backup_id, directory = jobs_backup
    table = json.loads((directory / "manifest.json").read_text())["postgres"]["tables"][0]
    with psycopg.connect(pg_server.conninfo(empty_target[0]), autocommit=True) as conn:
        # a type is no table: the target counts as empty, and pg_restore's CREATE TABLE then fails
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table["schema"])))
        conn.execute(sql.SQL("CREATE TYPE {}.{} AS (x int)").format(sql.Identifier(table["schema"]),
                                                                    sql.Identifier(table["table"])))
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--jobs", "2")
    assert restored.exit_code == 1, restored.stderr
    line = _one_line(restored)
    assert "already exists" in line and "transaction_timeout" not in line
    assert "--jobs: the database keeps what was restored before it" in line


def test_corrupted_file_in_the_directory_fails_verify(cli: Any, jobs_backup: tuple[str, Path]) -> None:
    backup_id, directory = jobs_backup
    data = sorted(p for p in next((directory / "postgres").iterdir()).iterdir() if p.name != "toc.dat")
    victim = max(data, key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    checked = cli("-p", "src", "backup", "verify", backup_id)
    assert checked.exit_code == 8, checked.stderr
    assert victim.name in checked.stderr and "checksum mismatch" in checked.stderr
    # restore reads every file's checksum before pg_restore starts: nothing written
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--jobs", "2")
    assert restored.exit_code == 8 and "damaged" in restored.stderr


def test_damaged_file_wins_over_a_target_that_is_not_empty(cli: Any, pg_server: PgServer,
                                                           jobs_backup: tuple[str, Path],
                                                           empty_target: tuple[str, str]) -> None:  # noqa: F811
    """The checksums are taken while the target is checked (archive_check): a damaged file is still
    what is reported (exit 8, not 7), and pg_restore never starts."""
    import psycopg

    backup_id, directory = jobs_backup
    victim = max((p for p in next((directory / "postgres").iterdir()).iterdir() if p.name != "toc.dat"),
                 key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with psycopg.connect(pg_server.conninfo(empty_target[0]), autocommit=True) as conn:
        conn.execute("CREATE TABLE already_here (id int)")
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--jobs", "2")
    assert restored.exit_code == 8, restored.stderr
    assert _one_line(restored) == f"Error: backup {backup_id} is damaged: {victim.relative_to(directory)}: " \
                                  "checksum mismatch"
    assert _pg_counts(pg_server, empty_target[0]) == {"already_here": 0}  # nothing written
    # with --drop, the damaged file stops it before pg_restore starts too
    dropped = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                  "--jobs", "2", "--drop")
    assert dropped.exit_code == 8 and "checksum mismatch" in dropped.stderr
    assert _pg_counts(pg_server, empty_target[0]) == {"already_here": 0}


def test_restore_jobs_count_mismatch_exits_8(cli: Any, pg_server: PgServer, jobs_backup: tuple[str, Path],
                                             empty_target: tuple[str, str]) -> None:  # noqa: F811
    """The rows are counted while pg_restore runs (pg_restore_counts); a count the manifest does not
    expect still fails the restore, which keeps what it wrote (--jobs)."""
    from dbcli.backup import store as backup_store

    backup_id, directory = jobs_backup
    manifest = backup_store.read_manifest(directory)
    table = max(manifest["postgres"]["tables"], key=lambda t: t["rows"])
    table["rows"] += 1  # a manifest that promises more than the dump holds (checksum recomputed)
    backup_store.write_manifest(directory, {k: v for k, v in manifest.items() if k != "checksum"})
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres",
                   "--jobs", "2", "-f", "json")
    assert restored.exit_code == 8
    assert restored.stderr == (f"Error: 1 count(s) differ after restoring: postgres {table['schema']}."
                               f"{table['table']} has {table['rows'] - 1}, the backup {table['rows']}; "
                               "the postgres restore was not rolled back (--jobs)\n")
    assert _pg_counts(pg_server, empty_target[0])[table["table"]] == table["rows"] - 1


def test_restore_jobs_counts_parents_after_their_children(cli: Any, tmp_path: Path, pg_server: PgServer,
                                                          mongo_server: MongoServer,
                                                          empty_target: tuple[str, str]) -> None:  # noqa: F811
    """A table is counted as soon as pg_restore has loaded it, but not one that inherits or is
    inherited from: a parent's count takes its children's rows, loaded by other items."""
    import psycopg

    src, again = pg_server.create_database(), pg_server.create_database()
    try:
        with psycopg.connect(pg_server.conninfo(src), autocommit=True) as conn:
            conn.execute("CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent);"
                         "CREATE TABLE measures (at int NOT NULL, v int) PARTITION BY RANGE (at);"
                         "CREATE TABLE measures_1 PARTITION OF measures FOR VALUES FROM (0) TO (1000);"
                         "CREATE TABLE measures_2 PARTITION OF measures FOR VALUES FROM (1000) TO (MAXVALUE);"
                         "CREATE TABLE plain (id int PRIMARY KEY);"
                         "CREATE SCHEMA other; CREATE TABLE other.plain (id int);"
                         "INSERT INTO parent SELECT generate_series(1, 30);"
                         "INSERT INTO child SELECT generate_series(1, 300000);"
                         "INSERT INTO measures SELECT g, g FROM generate_series(1, 5000) g;"
                         "INSERT INTO plain SELECT generate_series(1, 7);"
                         "INSERT INTO other.plain SELECT generate_series(1, 3)")
        _two_profiles(tmp_path, pg_server, (src, f"m_{src}"), empty_target, mongo_server,
                      {"backup": {"dir": str(tmp_path / "backups")}})
        made = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
        assert made.exit_code == 0, made.stderr
        restored = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--target",
                       "postgres", "--jobs", "2", "-f", "json")
        assert restored.exit_code == 0, restored.stderr
        rows = {r["name"]: (r["expected"], r["restored"]) for r in restored.json()}
        assert all(expected == got for expected, got in rows.values()), rows
        assert rows["public.plain"] == (7, 7) and rows["other.plain"] == (3, 3)
        assert list(rows) == sorted(rows)  # in the order the one-transaction restore lists them

        # a backup of an older dbcli counted each table with its children: so does its restore
        from dbcli.backup import store as backup_store

        directory = tmp_path / "backups" / made.json()["id"]
        manifest = backup_store.read_manifest(directory)
        del manifest["postgres"]["row_counts"]
        with_children = {"parent": 300030, "measures": 5000}
        for t in manifest["postgres"]["tables"]:
            t["rows"] = with_children.get(t["table"], t["rows"])
        backup_store.write_manifest(directory, {k: v for k, v in manifest.items() if k != "checksum"})
        _two_profiles(tmp_path, pg_server, (src, f"m_{src}"), (again, f"m_{again}"), mongo_server,
                      {"backup": {"dir": str(tmp_path / "backups")}})
        old = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--target",
                  "postgres", "--jobs", "2", "-f", "json")
        assert old.exit_code == 0, old.stderr
        rows = {r["name"]: (r["expected"], r["restored"]) for r in old.json()}
        assert rows["public.parent"] == (300030, 300030) and rows["public.measures"] == (5000, 5000), rows
        assert all(expected == got for expected, got in rows.values()), rows
    finally:
        pg_server.drop_database(src)
        pg_server.drop_database(again)


def _one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Hint:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for this test (in this process and the ones it starts): where scratch directories go."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def scratch_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("dbcli-scratch-"))


def test_jobs_with_encryption_round_trip(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                         mongo_server: MongoServer, empty_target: tuple[str, str],  # noqa: F811
                                         scratch_root: Path) -> None:
    _two_profiles(tmp_path, pg_server, (_src_db(seeded), seeded.mongo.database), empty_target, mongo_server,
                  {"backup": {"dir": str(tmp_path / "backups"), "encryption_key": TEST_KEY}})
    made = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
    assert made.exit_code == 0, made.stderr
    assert made.json()["encrypted"] is True
    directory = tmp_path / "backups" / made.json()["id"]
    manifest = json.loads((directory / "manifest.json").read_text())
    archive = directory / manifest["postgres"]["file"]
    stored = sorted(archive.iterdir())
    assert "toc.dat.enc" in [p.name for p in stored] and len(stored) > 2
    # every file of the directory encrypted as a single-file dump is, each with its manifest entry
    assert all(p.name.endswith(".enc") and p.read_bytes().startswith(b"DBCLIAE1") for p in stored)
    assert {str(p.relative_to(directory)) for p in stored} == set(manifest["files"])
    assert scratch_dirs(scratch_root) == []  # the plaintext dump is gone

    checked = cli("-p", "src", "backup", "verify", made.json()["id"], "--restore-test", "-f", "json")
    assert checked.exit_code == 0, checked.stderr
    assert {c["check"] for c in checked.json()} >= {"checksum", "pg_restore", "restore-test"}
    restored = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--target", "postgres",
                   "--jobs", "2", "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    assert all(r["ok"] for r in restored.json())
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, _src_db(seeded))
    # refused (not empty) after the archive was fetched: the scratch directory goes on that path too
    again = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--target", "postgres",
                "--jobs", "2")
    assert again.exit_code == 7, again.stderr
    assert scratch_dirs(scratch_root) == []


def test_damaged_encrypted_directory_file_fails_verify_and_restore(
        cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer, mongo_server: MongoServer,
        empty_target: tuple[str, str], scratch_root: Path) -> None:  # noqa: F811
    _two_profiles(tmp_path, pg_server, (_src_db(seeded), seeded.mongo.database), empty_target, mongo_server,
                  {"backup": {"dir": str(tmp_path / "backups"), "encryption_key": TEST_KEY}})
    made = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
    assert made.exit_code == 0, made.stderr
    directory = tmp_path / "backups" / made.json()["id"]
    victim = max((p for p in directory.rglob("*.enc") if p.name != "toc.dat.enc"), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    checked = cli("-p", "src", "backup", "verify", made.json()["id"])
    assert checked.exit_code == 8, checked.stderr
    assert victim.name in checked.stderr and "checksum mismatch" in checked.stderr
    restored = cli("-p", "src", "backup", "restore", made.json()["id"], "--profile", "dst", "--target", "postgres",
                   "--jobs", "2")
    assert restored.exit_code == 8 and "damaged" in restored.stderr, restored.stderr
    assert _pg_counts(pg_server, empty_target[0]) != _pg_counts(pg_server, _src_db(seeded))  # nothing written
    assert scratch_dirs(scratch_root) == []


def test_a_killed_runs_scratch_directory_is_removed_by_the_next(scratch_root: Path) -> None:
    """A scratch directory nobody holds (its run was killed) goes; a live run's stays."""
    from dbcli.backup.scratch import Scratch, clean_stale

    dead = scratch_root / "dbcli-scratch-dead"
    (dead / "db.dir").mkdir(parents=True)
    (dead / "db.dir" / "toc.dat").write_bytes(b"plaintext")
    with Scratch() as live:
        held = live.path()
        assert held.parent == scratch_root and held.stat().st_mode & 0o777 == 0o700
        assert not dead.exists()  # cleaned when this run made its own
        assert clean_stale() == [] and held.is_dir()
    assert scratch_dirs(scratch_root) == []


def test_a_scratch_directory_removed_before_it_is_opened_is_made_again(scratch_root: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run's clean_stale may remove a new directory between its mkdtemp and its lock (it is not
    held yet): that run made another one instead of failing with "cannot write"."""
    from dbcli.backup import scratch

    made = tempfile.mkdtemp
    calls: list[str] = []

    def raced(**kwargs: Any) -> str:
        path = made(**kwargs)
        calls.append(path)
        if len(calls) == 1:
            scratch.clean_stale()  # as another run's would, in that instant
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", raced)
    with scratch.Scratch() as run:
        held = run.path()
        assert held.is_dir() and len(calls) == 2
    assert scratch_dirs(scratch_root) == []


def test_a_killed_runs_decrypted_dump_goes_with_a_verify_that_needs_no_scratch(
        cli: Any, jobs_backup: tuple[str, Path], scratch_root: Path) -> None:
    """A ``restore --jobs`` of an encrypted backup killed with -9 left its decrypted dump; it stayed
    until a run happened to need a scratch directory itself: a verify of a plain local backup keeps none."""
    backup_id, _directory = jobs_backup
    dead = scratch_root / "dbcli-scratch-killed"
    (dead / "db.dir").mkdir(parents=True)
    (dead / "db.dir" / "toc.dat").write_bytes(b"decrypted")
    checked = cli("-p", "src", "backup", "verify", backup_id)
    assert checked.exit_code == 0, checked.stderr
    assert scratch_dirs(scratch_root) == []


def test_jobs_must_be_positive(cli: Any, seeded: Any, tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {
        "backup": {"dir": str(tmp_path / "backups")},
        "profiles": {"src": {"postgres": {"dsn": seeded.postgres.dsn}}}})
    result = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "0")
    assert result.exit_code == 2
    assert "--jobs" in _one_line(result)
