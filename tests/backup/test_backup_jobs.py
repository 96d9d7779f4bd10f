"""backup create --jobs / restore --jobs: pg_dump's directory format, pg_restore -j, and what they refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.backup.test_backup import _pg_counts, _two_profiles, empty_target  # noqa: F401 (a fixture)
from tests.fix_backup import TEST_KEY
from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.fix_s3 import free_port
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
    if pg_server.major < 17:
        _refused_on_an_older_server(restored, pg_server)
        assert _pg_counts(pg_server, empty_target[0]) != _pg_counts(pg_server, _src_db(seeded))
    else:
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
    if pg_server.major < 17:
        _refused_on_an_older_server(restored, pg_server)
        return
    assert restored.exit_code == 0, restored.stderr
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, _src_db(seeded))


def _refused_on_an_older_server(restored: Any, pg_server: PgServer) -> None:
    """pg_restore 17+ jobs send SET transaction_timeout, which PostgreSQL 15 and 16 refuse: exit 3
    before anything is written (the one-transaction restore adapts its script instead)."""
    assert restored.exit_code == 3, restored.stderr
    assert restored.stderr.startswith("Error: restore --jobs: pg_restore ")
    assert f"which PostgreSQL {pg_server.major} refuses (hint: restore without --jobs" in restored.stderr
    assert len(restored.stderr.splitlines()) == 1


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


def _one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Hint:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_jobs_with_encryption_exits_2(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                      mongo_server: MongoServer) -> None:
    write_config(tmp_path / "dbcli.yaml", {
        "backup": {"dir": str(tmp_path / "backups"), "encryption_key": TEST_KEY},
        "profiles": {"src": {"postgres": {"dsn": seeded.postgres.dsn}}}})
    result = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2")
    assert result.exit_code == 2
    assert "encryption" in _one_line(result)
    assert not list((tmp_path / "backups").glob("*Z-*"))


def test_jobs_with_object_storage_exits_2(cli: Any, seeded: Any, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    write_config(tmp_path / "dbcli.yaml", {
        "backup": {"dir": "s3://bk/dbcli", "s3": {"endpoint_url": down, "access_key_id": "k",
                                                  "secret_access_key": "s", "timeout": 2}},
        "profiles": {"src": {"postgres": {"dsn": seeded.postgres.dsn}}}})
    result = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2")
    assert result.exit_code == 2
    assert "local backup directory" in _one_line(result)
