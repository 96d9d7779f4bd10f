"""backup create, list, verify, restore: round trips against the real servers, refusals, damage."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fix_backup import TEST_KEY, MadeBackup, profile_settings
from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.helpers import write_config


def _pg_counts(pg: PgServer, db: str) -> dict[str, int]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg.conninfo(db)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE relkind = 'r' AND nspname = 'public' ORDER BY 1").fetchall()]
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                for t in tables}


def _mongo_counts(mongo: MongoServer, db: str) -> dict[str, int]:
    client = mongo.client()
    try:
        return {n: client[db][n].count_documents({}) for n in sorted(client[db].list_collection_names())}
    finally:
        client.close()


def _two_profiles(tmp_path: Path, pg_server: PgServer, src: tuple[str, str], dst: tuple[str, str],
                  mongo_server: MongoServer, extra: dict[str, Any] | None = None) -> None:
    write_config(tmp_path / "dbcli.yaml", {
        **(extra or {}),
        "profiles": {"src": profile_settings(pg_server, src[0], mongo_server, src[1]),
                     "dst": profile_settings(pg_server, dst[0], mongo_server, dst[1])},
    })


@pytest.fixture
def empty_target(pg_server: PgServer, mongo_server: MongoServer) -> Any:
    """(pg database, mongo database): both empty, dropped after the test."""
    import uuid

    pg_db = pg_server.create_database()
    mongo_db = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_db, mongo_db
    pg_server.drop_database(pg_db)
    client = mongo_server.client()
    client.drop_database(mongo_db)
    client.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_create_list_verify_restore_round_trip(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                               mongo_server: MongoServer, empty_target: tuple[str, str],
                                               encrypted: bool) -> None:
    from psycopg.conninfo import conninfo_to_dict

    src_db = conninfo_to_dict(seeded.postgres.dsn)["dbname"]
    extra = {"backup": {"encryption_key": TEST_KEY}} if encrypted else None
    _two_profiles(tmp_path, pg_server, (src_db, seeded.mongo.database), empty_target, mongo_server, extra)

    made = cli("-p", "src", "backup", "create", "--tag", "nightly", "-f", "json")
    assert made.exit_code == 0, made.stderr
    summary = made.json()
    assert summary["status"] == "ok" and summary["encrypted"] is encrypted
    assert summary["id"].endswith("Z-src-nightly")
    assert summary["targets"] == ["postgres", "mongo"]
    assert summary["tables"] == 9 and summary["rows"] > 0 and summary["collections"] == 3
    assert made.stderr == ""  # not a TTY: no progress

    listed = cli("-p", "src", "backup", "list", "-f", "json").json()
    assert [(r["id"], r["status"], r["verified"]) for r in listed] == [(summary["id"], "ok", "never")]

    checked = cli("-p", "src", "backup", "verify", "--latest", "-f", "json")
    assert checked.exit_code == 0, checked.stderr
    assert all(c["ok"] for c in checked.json())
    assert {c["check"] for c in checked.json()} == {"manifest", "checksum", "pg_restore", "metadata", "bson"}
    assert cli("-p", "src", "backup", "list", "-f", "json").json()[0]["verified"].startswith("ok ")

    restored = cli("-p", "src", "backup", "restore", summary["id"], "--profile", "dst", "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    rows = restored.json()
    assert rows and all(r["ok"] for r in rows)
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, src_db)
    assert _mongo_counts(mongo_server, empty_target[1]) == _mongo_counts(mongo_server, seeded.mongo.database)
    assert {r["name"] for r in rows if r["target"] == "mongo"} == {"user_activities", "user_stats",
                                                                   "activity_buckets"}


def test_files_are_private_and_manifest_complete(made_backup: MadeBackup, pg_server: PgServer) -> None:
    path = made_backup.root / made_backup.id
    for p in [path, *path.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), p
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["dbcli_version"]
    assert manifest["postgres"]["server_version"].startswith(f"{pg_server.major}.")
    assert manifest["mongo"]["server"]["flavour"] in ("FerretDB", "MongoDB")
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    tables = {t["table"]: t["rows"] for t in manifest["postgres"]["tables"]}
    assert tables["users"] == 12 and tables["orders"] == 25
    # the mongodump layout: <db>/<coll>.bson.gz and <coll>.metadata.json.gz
    db = made_backup.mongo_db
    assert f"mongo/{db}/user_activities.bson.gz" in manifest["files"]
    assert f"mongo/{db}/user_activities.metadata.json.gz" in manifest["files"]


def test_mongo_files_use_mongodump_format(made_backup: MadeBackup) -> None:
    import gzip

    import bson

    d = made_backup.root / made_backup.id / "mongo" / made_backup.mongo_db
    meta = json.loads(gzip.decompress((d / "user_stats.metadata.json.gz").read_bytes()))
    assert meta["collectionName"] == "user_stats" and meta["type"] == "collection" and meta["options"] == {}
    assert {"key": {"_id": {"$numberInt": "1"}}, "name": "_id_"}.items() <= meta["indexes"][0].items()
    docs = bson.decode_all(gzip.decompress((d / "user_stats.bson.gz").read_bytes()))
    manifest = json.loads((made_backup.root / made_backup.id / "manifest.json").read_text())
    (expected,) = [c["documents"] for c in manifest["mongo"]["collections"] if c["name"] == "user_stats"]
    assert len(docs) == expected > 0 and all("_id" in doc for doc in docs)


@pytest.mark.pg(">= 17")
def test_pg_dump_is_restorable_by_pg_restore_alone(made_backup: MadeBackup, pg_server: PgServer,
                                                   empty_target: tuple[str, str]) -> None:
    from dbcli.postgres import embedded as local_pg

    dump = made_backup.root / made_backup.id / "postgres" / f"{made_backup.pg_db}.dump"
    proc = subprocess.run([str(local_pg.bin_dir() / "pg_restore"), "--exit-on-error", "--no-owner",
                           "-d", pg_server.conninfo(empty_target[0]), str(dump)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, made_backup.pg_db)


@pytest.mark.pg("< 17")
def test_pg_dump_is_restorable_by_the_stock_tools_into_older_servers(made_backup: MadeBackup, pg_server: PgServer,
                                                                     empty_target: tuple[str, str]) -> None:
    """pg_restore 17+ sets transaction_timeout, which 15 and 16 lack: the pipeline docs/backups.md gives."""
    from dbcli.postgres import embedded as local_pg

    dump = made_backup.root / made_backup.id / "postgres" / f"{made_backup.pg_db}.dump"
    pg_restore = [str(local_pg.bin_dir() / "pg_restore"), "--exit-on-error", "--no-owner", "-f", "-", str(dump)]
    psql = [str(local_pg.bin_dir() / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-d", pg_server.conninfo(empty_target[0])]
    script = f"{shlex.join(pg_restore)} | grep -vx 'SET transaction_timeout = 0;' | {shlex.join(psql)}"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _pg_counts(pg_server, empty_target[0]) == _pg_counts(pg_server, made_backup.pg_db)


def test_restore_refuses_non_empty_target_then_drop_replaces(cli: Any, made_backup: MadeBackup,
                                                             tmp_path: Path) -> None:
    root = made_backup.copy_to(tmp_path)
    refused = cli("backup", "restore", made_backup.id, "--dir", str(root))
    assert refused.exit_code == 7
    assert refused.stderr == (f"Error: postgres database {made_backup.pg_db} is not empty "
                              "(hint: use --drop to replace its objects)\n")
    mongo_only = cli("backup", "restore", made_backup.id, "--dir", str(root), "--target", "mongo")
    assert mongo_only.exit_code == 7
    assert mongo_only.stderr.startswith(f"Error: mongo database {made_backup.mongo_db} is not empty")
    replaced = cli("backup", "restore", "latest", "--dir", str(root), "--drop", "-f", "json")
    assert replaced.exit_code == 0, replaced.stderr
    assert all(r["ok"] for r in replaced.json())


def test_restore_count_mismatch_exits_8(cli: Any, made_backup: MadeBackup, tmp_path: Path,
                                        empty_target: tuple[str, str], pg_server: PgServer,
                                        mongo_server: MongoServer) -> None:
    from dbcli.backup import store as backup_store

    root = made_backup.copy_to(tmp_path)
    path = root / made_backup.id
    manifest = backup_store.read_manifest(path)
    orders = next(t for t in manifest["postgres"]["tables"] if t["table"] == "orders")
    orders["rows"] += 1  # a manifest that promises more than the dump holds (checksum recomputed)
    backup_store.write_manifest(path, {k: v for k, v in manifest.items() if k != "checksum"})
    _two_profiles(tmp_path, pg_server, (made_backup.pg_db, made_backup.mongo_db), empty_target, mongo_server)
    result = cli("-p", "src", "backup", "restore", made_backup.id, "--dir", str(root), "--profile", "dst",
                 "--target", "postgres", "-f", "json")
    assert result.exit_code == 8
    assert result.stderr == ("Error: 1 count(s) differ after restoring: postgres public.orders has 25, the backup 26; "
                             "the postgres restore was rolled back\n")
    assert _pg_counts(pg_server, empty_target[0]) == {}  # counted before the commit, which never came
    verify = cli("backup", "verify", made_backup.id, "--dir", str(root), "--restore-test")
    assert verify.exit_code == 8
    assert verify.stderr == (f"Error: backup {made_backup.id} failed verification: postgres public.orders: "
                             "25 rows restored, manifest says 26\n")


def _flip(path: Path, where: str) -> None:
    data = bytearray(path.read_bytes())
    i = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _file_of(made: MadeBackup, kind: str, encrypted: bool) -> str:
    enc = ".enc" if encrypted else ""
    return {"manifest": "manifest.json",
            "pg_dump": f"postgres/{made.pg_db}.dump{enc}",
            "bson": f"mongo/{made.mongo_db}/user_activities.bson.gz{enc}",
            "metadata": f"mongo/{made.mongo_db}/user_stats.metadata.json.gz{enc}"}[kind]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("kind", ["manifest", "pg_dump", "bson", "metadata"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_flipped_byte_fails_verify(cli: Any, request: pytest.FixtureRequest, tmp_path: Path, kind: str,
                                   where: str, encrypted: bool) -> None:
    made: MadeBackup = request.getfixturevalue("made_encrypted_backup" if encrypted else "made_backup")
    root = made.copy_to(tmp_path)
    rel = _file_of(made, kind, encrypted)
    _flip(root / made.id / rel, where)
    result = cli("backup", "verify", made.id, "--dir", str(root))
    assert result.exit_code == 8
    prefix = f"Error: backup {made.id} failed verification: "
    if kind == "manifest":
        assert result.stderr in (f"{prefix}manifest.json: manifest.json checksum mismatch\n",
                                 f"{prefix}manifest.json: manifest.json is not valid JSON\n")
    else:
        assert result.stderr == f"{prefix}{rel}: checksum mismatch\n"
    listed = cli("backup", "list", "--dir", str(root), "-f", "json").json()
    assert listed[0]["verified"].startswith("FAILED ")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("kind", ["pg_dump", "bson"])
def test_truncation_found_beyond_checksums(cli: Any, request: pytest.FixtureRequest, tmp_path: Path,
                                           kind: str, encrypted: bool) -> None:
    """A truncated file whose checksum was 'fixed' is still caught by reading it."""
    from dbcli.backup import store as backup_store

    made: MadeBackup = request.getfixturevalue("made_encrypted_backup" if encrypted else "made_backup")
    root = made.copy_to(tmp_path)
    path = root / made.id
    rel = _file_of(made, kind, encrypted)
    data = (path / rel).read_bytes()
    (path / rel).write_bytes(data[: len(data) // 3])
    manifest = backup_store.read_manifest(path)
    manifest["files"][rel] = {"size": (path / rel).stat().st_size, "sha256": backup_store.sha256_file(path / rel)}
    backup_store.write_manifest(path, {k: v for k, v in manifest.items() if k != "checksum"})
    result = cli("backup", "verify", made.id, "--dir", str(root), "-f", "json")
    assert result.exit_code == 8
    failed = [c for c in result.json() if not c["ok"]]
    assert [(c["check"], c["subject"]) for c in failed] == [("pg_restore" if kind == "pg_dump" else "bson", rel)]
    assert result.stderr.startswith(f"Error: backup {made.id} failed verification: {rel}: ")


def test_encrypted_backup_needs_its_key(cli: Any, made_encrypted_backup: MadeBackup, tmp_path: Path) -> None:
    import base64

    root = made_encrypted_backup.copy_to(tmp_path)
    settings = dict(made_encrypted_backup.settings)
    settings["backup"] = {}
    write_config(tmp_path / "dbcli.yaml", settings)
    result = cli("backup", "verify", "--latest", "--dir", str(root))
    assert result.exit_code == 3
    assert result.stderr == (f"Error: backup {made_encrypted_backup.id} is encrypted but "
                             "backup.encryption_key is not set\n")
    settings["backup"] = {"encryption_key": base64.b64encode(b"x" * 32).decode()}
    write_config(tmp_path / "dbcli.yaml", settings)
    result = cli("backup", "verify", "--latest", "--dir", str(root))
    assert result.exit_code == 3
    assert "is not the key backup" in result.stderr
    settings["backup"] = {"encryption_key": "not base64!"}
    write_config(tmp_path / "dbcli.yaml", settings)
    result = cli("backup", "create", "--dir", str(root))
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: backup.encryption_key: must be a base64-encoded 32-byte key")


def test_encrypted_files_hold_no_plaintext(made_encrypted_backup: MadeBackup) -> None:
    path = made_encrypted_backup.root / made_encrypted_backup.id
    dump = (path / "postgres" / f"{made_encrypted_backup.pg_db}.dump.enc").read_bytes()
    assert dump.startswith(b"DBCLIAE1") and b"PGDMP" not in dump
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["encryption"]["key_id"] and TEST_KEY not in json.dumps(manifest)


def test_verify_restore_test_drops_scratch_databases(cli: Any, made_backup: MadeBackup, tmp_path: Path,
                                                     pg_server: PgServer, mongo_server: MongoServer) -> None:
    root = made_backup.copy_to(tmp_path)
    result = cli("backup", "verify", made_backup.id, "--dir", str(root), "--restore-test", "-f", "json")
    assert result.exit_code == 0, result.stderr
    tested = [c["subject"] for c in result.json() if c["check"] == "restore-test"]
    assert "postgres public.orders" in tested and "mongo user_stats" in tested
    with pg_server.admin() as conn:
        assert not conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbcli_verify_%'").fetchall()
    client = mongo_server.client()
    assert not [d for d in client.list_database_names() if d.startswith("dbcli_verify_")]
    client.close()
    listed = cli("backup", "list", "--dir", str(root), "-f", "json").json()
    assert listed[0]["verified"].endswith("(restore-test)")


def test_empty_database_is_an_error_not_a_backup(cli: Any, config_file: Path, pg_db: str) -> None:
    result = cli("backup", "create")
    assert result.exit_code == 8
    assert result.stderr == (f"Error: postgres database {pg_db} has no tables: refusing to write an empty "
                             "backup\n")
    (row,) = cli("backup", "list", "-f", "json").json()
    assert row["status"] == "failed" and row["size"] == "0 B"
    latest = cli("backup", "verify", "--latest")
    assert latest.exit_code == 6
    assert latest.stderr.startswith("Error: no complete backup in ")
    failed = cli("backup", "verify", row["id"])
    assert failed.exit_code == 8
    assert "status is failed: postgres database" in failed.stderr


def test_mongo_target_without_mongo_is_config_error(cli: Any, config_file: Path) -> None:
    result = cli("backup", "create", "--target", "mongo")
    assert result.exit_code == 3
    assert result.stderr == "Error: no MongoDB is configured (hint: set mongo.uri, or mongo.embedded: true)\n"
    assert cli("backup", "create", "--target", "mysql").exit_code == 2


def test_old_pg_dump_is_refused(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer) -> None:
    major = pg_server.major
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n")
    fake.chmod(0o755)
    settings = json.loads(json.dumps(_settings_of(tmp_path)))
    settings["backup"] = {"pg_dump": str(fake)}
    write_config(tmp_path / "dbcli.yaml", settings)
    result = cli("backup", "create", "--target", "postgres")
    assert result.exit_code == 3
    assert result.stderr == (f"Error: pg_dump 12.22 ({fake}) is older than the server (PostgreSQL {major}) and "
                             f"cannot dump it (hint: set backup.pg_dump to a pg_dump {major} or later)\n")
    settings["backup"] = {"pg_dump": str(tmp_path / "nope")}
    write_config(tmp_path / "dbcli.yaml", settings)
    result = cli("backup", "create", "--target", "postgres")
    assert result.exit_code == 3
    assert result.stderr == f"Error: backup.pg_dump {tmp_path / 'nope'} is not an executable file\n"


def _settings_of(tmp_path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((tmp_path / "dbcli.yaml").read_text())


def test_quiet_create_prints_nothing_and_unknown_id_is_6(cli: Any, seeded: Any) -> None:
    result = cli("-q", "backup", "create", "--target", "postgres")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    missing = cli("backup", "verify", "20000101T000000Z-nope")
    assert missing.exit_code == 6
    assert missing.stderr.startswith("Error: no backup '20000101T000000Z-nope' in ")
    assert cli("backup", "create", "--tag", "bad tag").exit_code == 2


def test_second_backup_in_the_same_second_gets_a_new_id(seeded: Any, tmp_path: Path) -> None:
    import datetime as dt

    from dbcli.backup.create import create

    fixed = dt.datetime(2026, 11, 29, 10, 15, tzinfo=dt.UTC)
    ids = [create(seeded, target="postgres", root=tmp_path / "b", clock=lambda: fixed)["id"]
           for _ in range(2)]
    assert ids == [f"20261129T101500Z-{seeded.profile}", f"20261129T101500Z-{seeded.profile}-2"]


def test_demo_step(seeded: Any) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo import backup as demo_backup

    out, err = io.StringIO(), io.StringIO()
    demo_backup.step(seeded, Output(fmt="json", stdout=out, stderr=err))
    checks = json.loads(out.getvalue())
    assert checks and all(c["ok"] for c in checks)
    assert "backup: creating a backup of the demo data" in err.getvalue()
    assert os.listdir(seeded.data_dir / "backups")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_restore_of_a_damaged_dump_changes_nothing(cli: Any, request: pytest.FixtureRequest, tmp_path: Path,
                                                   empty_target: tuple[str, str], pg_server: PgServer,
                                                   mongo_server: MongoServer, where: str, encrypted: bool) -> None:
    """The checksum is checked while pg_restore reads the dump: the commit waits for it."""
    made: MadeBackup = request.getfixturevalue("made_encrypted_backup" if encrypted else "made_backup")
    root = made.copy_to(tmp_path)
    rel = _file_of(made, "pg_dump", encrypted)
    _flip(root / made.id / rel, where)
    _two_profiles(tmp_path, pg_server, (made.pg_db, made.mongo_db), empty_target, mongo_server,
                  extra={"backup": made.settings.get("backup", {})})
    result = cli("-p", "src", "backup", "restore", made.id, "--dir", str(root), "--profile", "dst")
    assert result.exit_code == 8
    detail = "checksum mismatch" if not encrypted else ""
    assert result.stderr.startswith(f"Error: backup {made.id} is damaged: {rel}: {detail}")
    assert result.stderr.endswith("(hint: nothing was restored)\n")
    assert _pg_counts(pg_server, empty_target[0]) == {}
    assert _mongo_counts(mongo_server, empty_target[1]) == {}


def test_restore_failing_half_way_is_rolled_back(cli: Any, made_backup: MadeBackup, tmp_path: Path,
                                                 empty_target: tuple[str, str], pg_server: PgServer,
                                                 mongo_server: MongoServer) -> None:
    """A dump cut short (its checksum 'fixed' to match) makes pg_restore fail: nothing is committed."""
    from dbcli.backup import store as backup_store

    root = made_backup.copy_to(tmp_path)
    path = root / made_backup.id
    rel = _file_of(made_backup, "pg_dump", False)
    data = (path / rel).read_bytes()
    (path / rel).write_bytes(data[: len(data) // 2])
    manifest = backup_store.read_manifest(path)
    manifest["files"][rel] = {"size": (path / rel).stat().st_size, "sha256": backup_store.sha256_file(path / rel)}
    backup_store.write_manifest(path, {k: v for k, v in manifest.items() if k != "checksum"})
    _two_profiles(tmp_path, pg_server, (made_backup.pg_db, made_backup.mongo_db), empty_target, mongo_server)
    result = cli("-p", "src", "backup", "restore", made_backup.id, "--dir", str(root), "--profile", "dst",
                 "--target", "postgres")
    assert result.exit_code == 8
    assert result.stderr == (f"Error: backup {made_backup.id} is damaged: {rel}: pg_restore cannot read it: "
                             "could not read from input file: end of file (hint: nothing was restored)\n")
    assert _pg_counts(pg_server, empty_target[0]) == {}


def test_emptiness_is_checked_again_inside_the_restore_transaction(made_backup: MadeBackup, tmp_path: Path,
                                                                   pg_server: PgServer) -> None:
    """The library call alone (no CLI pre-check) refuses a non-empty target: no race with a writer."""
    from dbcli.backup import pg_restore
    from dbcli.backup import store as backup_store
    from dbcli.config.load import load_config
    from dbcli.errors import ConflictError

    root = made_backup.copy_to(tmp_path)
    manifest = backup_store.read_manifest(root / made_backup.id)
    pg = manifest["postgres"]
    before = _pg_counts(pg_server, made_backup.pg_db)
    with pytest.raises(ConflictError, match=f"postgres database {made_backup.pg_db} is not empty"):
        pg_restore.restore(load_config(), root / made_backup.id / pg["file"], key=None, drop=False,
                           tables=pg["tables"], server_num=pg_server.version_num, progress=lambda _: None)
    assert _pg_counts(pg_server, made_backup.pg_db) == before


def test_pg_restore_older_than_the_server_is_refused(made_backup: MadeBackup, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     empty_target: tuple[str, str], pg_server: PgServer) -> None:
    from dbcli.backup import pg_restore
    from dbcli.backup import store as backup_store
    from dbcli.config.load import load_config
    from dbcli.errors import ConfigError

    server_num = pg_server.version_num
    older = server_num // 10000 - 1
    monkeypatch.setattr(pg_restore, "tool_version", lambda path: (f"{older}.0", older))  # pg_restore's, not pg_dump's
    root = made_backup.copy_to(tmp_path)
    pg = backup_store.read_manifest(root / made_backup.id)["postgres"]
    with pytest.raises(ConfigError, match=rf"pg_restore {older}.0 is older than the server "
                                          rf"\(PostgreSQL {older + 1}\)"):
        pg_restore.restore(load_config(), root / made_backup.id / pg["file"], key=None, drop=False,
                           tables=pg["tables"], dbname=empty_target[0], server_num=server_num,
                           progress=lambda _: None)
    assert _pg_counts(pg_server, empty_target[0]) == {}


def test_restore_test_ignores_what_template1_holds(cli: Any, made_backup: MadeBackup, tmp_path: Path,
                                                   pg_server: PgServer) -> None:
    """The scratch database is made from template0: a site's additions to template1 are not 'data'."""
    import psycopg

    root = made_backup.copy_to(tmp_path)
    with psycopg.connect(pg_server.conninfo("template1"), autocommit=True) as conn:
        conn.execute("CREATE TABLE dbcli_site_extra (id int)")
        try:
            result = cli("backup", "verify", made_backup.id, "--dir", str(root), "--restore-test")
        finally:
            conn.execute("DROP TABLE dbcli_site_extra")
    assert result.exit_code == 0, result.stderr


def _pg_backup_of(cli: Any, pg_server: PgServer, pg_db: str, pg_config: dict[str, Any], tmp_path: Path,
                  script: str, **postgres: Any) -> Any:
    """Run the SQL ``script`` in the test's database, then ``backup create --target postgres`` of it."""
    import psycopg

    with psycopg.connect(pg_server.conninfo(pg_db), autocommit=True) as conn:
        conn.execute(script.encode())
    write_config(tmp_path / "dbcli.yaml", {"postgres": {**pg_config["postgres"], **postgres},
                                           "backup": {"dir": str(tmp_path / "b")}})
    made = cli("backup", "create", "--target", "postgres", "-f", "json")
    assert made.exit_code == 0, made.stderr
    return made


def test_odd_names_are_counted_in_the_dump_snapshot(cli: Any, pg_config: dict[str, Any], pg_server: PgServer,
                                                    pg_db: str, tmp_path: Path) -> None:
    # names that quoting or psql's line-based output could trip on, and a statement_timeout that
    # reaches the counting session as a psql variable
    made = _pg_backup_of(cli, pg_server, pg_db, pg_config, tmp_path, '''
        CREATE SCHEMA "Sch ""q""";
        CREATE TABLE "Sch ""q"""."we\'ird\nname" (id int);
        INSERT INTO "Sch ""q"""."we\'ird\nname" SELECT generate_series(1, 3);
        CREATE TABLE "é; DROP TABLE x" (id int);
        INSERT INTO "é; DROP TABLE x" VALUES (1), (2);''', statement_timeout=30)
    manifest = json.loads((Path(made.json()["path"]) / "manifest.json").read_text())
    assert [{k: v for k, v in t.items() if k != "oid"} for t in manifest["postgres"]["tables"]] == [
        {"schema": 'Sch "q"', "table": "we'ird\nname", "kind": "r", "rows": 3},
        {"schema": "public", "table": "é; DROP TABLE x", "kind": "r", "rows": 2},
    ]
    tested = cli("backup", "verify", "--latest", "--restore-test")
    assert tested.exit_code == 0, tested.stderr


def test_partitions_and_inheritance_are_counted_once(cli: Any, pg_config: dict[str, Any], pg_server: PgServer,
                                                    pg_db: str, tmp_path: Path) -> None:
    # a table's count is the rows its own TABLE DATA holds (COPY TO leaves out children); a
    # partitioned table's is its partitions' sum, not a second scan of them
    from dbcli.backup import store as backup_store

    made = _pg_backup_of(cli, pg_server, pg_db, pg_config, tmp_path, """
        CREATE TABLE ev (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY RANGE (id);
        CREATE TABLE ev_b1 PARTITION OF ev_b FOR VALUES FROM (0) TO (1000000);
        INSERT INTO ev SELECT g, '2024-01-01'::date + g % 700 FROM generate_series(1, 1000) g;
        CREATE TABLE parent (id int);
        CREATE TABLE child (extra int) INHERITS (parent);
        INSERT INTO parent SELECT generate_series(1, 10);
        INSERT INTO child SELECT g, g FROM generate_series(1, 5) g;""")
    assert made.json()["rows"] == 1015
    path = Path(made.json()["path"])
    manifest = backup_store.read_manifest(path)
    assert manifest["postgres"]["row_counts"] == "own"
    assert {t["table"]: (t["kind"], t["rows"]) for t in manifest["postgres"]["tables"]} == {
        "child": ("r", 5), "ev": ("p", 1000), "ev_a": ("r", 666), "ev_b": ("p", 334), "ev_b1": ("r", 334),
        "parent": ("r", 10)}
    tested = cli("backup", "verify", "--latest", "--restore-test", "-f", "json")
    assert tested.exit_code == 0, tested.stderr

    # a manifest from before "row_counts": every table counted with its children, and so compared
    old = {k: v for k, v in manifest.items() if k != "checksum"}
    old["postgres"] = {k: v for k, v in manifest["postgres"].items() if k != "row_counts"}
    old["postgres"]["tables"] = [{**t, "rows": 15} if t["table"] == "parent" else t for t in old["postgres"]["tables"]]
    backup_store.write_manifest(path, old)
    assert cli("backup", "verify", "--latest", "--restore-test").exit_code == 0
    old["postgres"]["tables"] = [{**t, "rows": 10} if t["table"] == "parent" else t for t in old["postgres"]["tables"]]
    backup_store.write_manifest(path, old)
    mismatch = cli("backup", "verify", "--latest", "--restore-test", "-f", "json")
    assert mismatch.exit_code == 8
    assert {"check": "restore-test", "subject": "postgres public.parent", "ok": False,
            "detail": "15 rows restored, manifest says 10"} in mismatch.json()


def test_archive_check_by_oid_and_by_name_for_older_manifests(made_backup: MadeBackup, tmp_path: Path) -> None:
    from dbcli.backup import store as backup_store
    from dbcli.backup.pg_archive import check_archive
    from dbcli.config.load import load_config
    from dbcli.errors import CheckFailedError
    from dbcli.postgres.tools import find_tools

    root = made_backup.copy_to(tmp_path)
    pg = backup_store.read_manifest(root / made_backup.id)["postgres"]
    dump, tools = root / made_backup.id / pg["file"], find_tools(load_config())
    assert all(isinstance(t["oid"], int) for t in pg["tables"])
    check_archive(tools, dump, None, tables=pg["tables"])
    # manifests written before dbcli recorded oids: matched by name
    check_archive(tools, dump, None, tables=[{k: v for k, v in t.items() if k != "oid"} for t in pg["tables"]])
    users = next(t for t in pg["tables"] if t["table"] == "users")
    with pytest.raises(CheckFailedError, match="has no data for table public.users"):
        check_archive(tools, dump, None, tables=[{**users, "oid": 1}])
    with pytest.raises(CheckFailedError, match="has no data for table public.nope"):
        check_archive(tools, dump, None, tables=[{"schema": "public", "table": "nope", "kind": "r"}])


def test_latin1_database_with_non_ascii_names(cli: Any, pg_server: PgServer, tmp_path: Path) -> None:
    # pg_restore --list prints names in the database's encoding: the archive is checked by oid
    import psycopg
    from psycopg import sql

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(3)]  # a LATIN1 source, LATIN1 and UTF8 targets
    try:
        with pg_server.admin() as conn:
            for name, encoding in zip(names, ("LATIN1", "LATIN1", "UTF8"), strict=True):
                conn.execute(sql.SQL("CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                             .format(sql.Identifier(name), sql.Literal(encoding)))
        with psycopg.connect(pg_server.conninfo(names[0]), autocommit=True) as conn:
            conn.execute('CREATE SCHEMA "ñu"')
            conn.execute('CREATE TABLE "ñu"."café" (id int, v text)')
            conn.execute("""INSERT INTO "ñu"."café" SELECT g, 'crème' FROM generate_series(1, 5) g""")
        write_config(tmp_path / "dbcli.yaml", {
            "backup": {"dir": str(tmp_path / "b")},
            "profiles": {profile: {"postgres": {"dsn": pg_server.conninfo(name)}}
                         for profile, name in zip(("src", "to_0", "to_1"), names, strict=True)}})
        made = cli("--profile", "src", "backup", "create", "--target", "postgres", "-f", "json")
        assert made.exit_code == 0, made.stderr
        manifest = json.loads((Path(made.json()["path"]) / "manifest.json").read_text())
        (table,) = manifest["postgres"]["tables"]
        assert (table["schema"], table["table"], table["rows"]) == ("ñu", "café", 5)
        assert isinstance(table["oid"], int)
        tested = cli("--profile", "src", "backup", "verify", "--latest", "--restore-test", "-f", "json")
        assert tested.exit_code == 0, tested.stderr
        assert {"check": "restore-test", "subject": "postgres ñu.café", "ok": True, "detail": ""} in tested.json()
        for profile in ("to_0", "to_1"):
            restored = cli("backup", "restore", made.json()["id"], "--target", "postgres", "--profile", profile,
                           "-f", "json")
            assert restored.exit_code == 0, restored.stderr
            assert restored.json() == [{"target": "postgres", "name": "ñu.café", "expected": 5, "restored": 5,
                                        "ok": True}]
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_unreachable_server_exits_4(cli: Any, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": f"postgresql://nobody:pw@127.0.0.1:{port}/x"},
                                           "backup": {"dir": str(tmp_path / "b")}})
    result = cli("backup", "create", "--target", "postgres")
    assert result.exit_code == 4
    assert result.stderr == (f'Error: cannot connect to PostgreSQL: connection to server at "127.0.0.1", port {port} '
                             "failed: Connection refused\n")


def test_explicit_settings_beat_a_service_entry(cli: Any, pg_config: dict[str, Any], pg_server: PgServer,
                                               pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libpq lets a service entry override PG* variables, not explicit keywords: psycopg (every other
    # command) passes keywords, and so must the tools, or the backup would be of another database
    import psycopg

    other = pg_server.create_database()
    try:
        for db, rows in ((pg_db, 3), (other, 1)):
            with psycopg.connect(pg_server.conninfo(db), autocommit=True) as conn:
                conn.execute("CREATE TABLE t (id int)")
                conn.execute("INSERT INTO t SELECT generate_series(1, %s)", (rows,))
        (tmp_path / "services.conf").write_text(f"[svc]\ndbname={other}\n")
        monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "services.conf"))
        monkeypatch.setenv("PGSERVICE", "svc")
        write_config(tmp_path / "dbcli.yaml", {"postgres": pg_config["postgres"],
                                               "backup": {"dir": str(tmp_path / "b")}})
        made = cli("backup", "create", "--target", "postgres", "-f", "json")
        assert made.exit_code == 0, made.stderr
        manifest = json.loads((Path(made.json()["path"]) / "manifest.json").read_text())
        assert manifest["postgres"]["database"] == pg_db
        assert manifest["postgres"]["tables"][0]["rows"] == 3
    finally:
        pg_server.drop_database(other)


@pytest.mark.parametrize(("dsn", "message"), [
    ("host=/tmp sslpassword=hunter2 dbname=x",
     "Error: connection parameter 'sslpassword' cannot be passed to pg_dump or psql without showing it in the "
     "process list (hint: use a client certificate key without a passphrase, or a service file)\n"),
    ("host='unterminated",
     "Error: postgres.dsn is not a valid connection string: unterminated quoted string in connection info "
     "string\n"),
])
def test_unusable_connection_settings_exit_3_in_one_line(cli: Any, tmp_path: Path, dsn: str, message: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": dsn}, "backup": {"dir": str(tmp_path / "b")}})
    result = cli("backup", "create", "--target", "postgres")
    assert (result.exit_code, result.stderr) == (3, message)
    assert "hunter2" not in result.stdout + result.stderr
