"""Bad input and faults for backups (issue 15): manifest entries that point outside the backup,
a read-only backup directory, no space left, and the file size limit hit by pg_dump."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbcli.backup import store as backup_store
from tests.fix_backup import MadeBackup
from tests.fix_pg import PgServer
from tests.helpers import can_mount, dbcli_in_shell


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "x"
    secret.write_bytes(b"not part of any backup\n")
    return secret


def _point_outside(backup: Path, field: str, entry: str, outside: Path) -> None:
    """Rewrite the manifest (and its checksum, which anyone can) so that ``field`` names ``entry``,
    listed with the outside file's real size and SHA-256."""
    manifest = backup_store.read_manifest(backup)
    del manifest["checksum"]
    meta = {"size": outside.stat().st_size, "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}
    if field == "files":
        manifest["files"][entry] = meta
    elif field == "postgres":
        manifest["files"].pop(manifest["postgres"]["file"])
        manifest["postgres"]["file"] = entry
        manifest["files"][entry] = meta
    else:
        coll = manifest["mongo"]["collections"][0]
        manifest["files"].pop(coll["bson_file"])
        coll["bson_file"] = entry
        manifest["files"][entry] = meta
    backup_store.write_manifest(backup, manifest)


ENTRIES = ["../../x", "postgres/../../../x", "absolute", "symlink"]


@pytest.mark.parametrize("field", ["files", "postgres", "mongo"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_a_manifest_entry_never_escapes_its_backup(cli: Any, made_backup: MadeBackup, tmp_path: Path,
                                                   pg_server: PgServer, entry: str, field: str) -> None:
    """verify accepted "../../x" with the outside file's real size and hash (exit 0)."""
    root = made_backup.copy_to(tmp_path)
    backup = root / made_backup.id
    outside = _outside(tmp_path)
    if entry == "absolute":
        entry = str(outside)
    elif entry == "symlink":  # a plain name, through a link that leads out
        (backup / "postgres" / "link").symlink_to(outside)
        entry = "postgres/link"
    _point_outside(backup, field, entry, outside)

    checked = cli("backup", "verify", made_backup.id, "--dir", str(root))
    assert checked.exit_code == 8, checked.stderr
    reason = f"manifest entry {entry!r} escapes the backup directory"
    assert checked.stderr == f"Error: backup {made_backup.id} failed verification: manifest.json: {reason}\n"

    target = pg_server.create_database()
    try:
        with psycopg.connect(pg_server.conninfo(target)) as conn:
            conn.execute("CREATE TABLE keep (id int)")
        settings = {**made_backup.settings, "postgres": {"dsn": pg_server.conninfo(target)}}
        from tests.helpers import write_config

        write_config(tmp_path / "target.yaml", settings)
        restored = cli("--config", "target.yaml", "backup", "restore", made_backup.id, "--drop", "--dir", str(root))
        assert restored.exit_code == 8
        assert restored.stderr == f"Error: backup {made_backup.id} is damaged: {reason}\n"
        with psycopg.connect(pg_server.conninfo(target)) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 1
    finally:
        pg_server.drop_database(target)

    pruned = cli("backup", "prune", "--keep-last", "1", "--dir", str(root), "-f", "json")
    assert pruned.exit_code == 8
    assert pruned.json() == [{"id": made_backup.id, "time": pruned.json()[0]["time"], "status": "invalid",
                              "action": "keep", "reasons": f"left alone: {reason}"}]
    assert pruned.stderr.startswith(f"Error: backup {made_backup.id} was left alone: {reason}")
    assert backup.is_dir() and outside.read_bytes() == b"not part of any backup\n"
    listed = cli("backup", "list", "--dir", str(root), "-f", "json").json()
    assert listed[0]["status"] == f"invalid: {reason}"


# ---- disk faults -----------------------------------------------------------------------------------

@pytest.fixture
def big_seeded(seeded: Any) -> Any:
    """The seeded database plus about 5 MB of rows: a dump larger than the limits below."""
    with psycopg.connect(seeded.postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)")
        conn.execute("INSERT INTO big SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 60000) i")
    return seeded


def test_read_only_backup_directory_exits_73(big_seeded: Any, tmp_path: Path) -> None:
    """`backup create --dir` on a read-only path ended as "unexpected OSError", exit 1."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only mount
        if not can_mount(tmp_path):
            pytest.skip("no mount namespace here")
        setup, namespace = f"mount --bind {ro} {ro}; mount -o remount,bind,ro {ro}", True
    else:
        ro.chmod(0o555)
        setup, namespace = "true", False
    for where, refused in ((ro, ro / ".lock"), (ro / "backups", ro / "backups")):
        done = dbcli_in_shell(setup, ["-q", "backup", "create", "--dir", str(where)], namespace=namespace)
        why = "read-only file system" if namespace else f"permission denied on {refused.parent}"
        assert (done.returncode, done.stderr) == (73, f"Error: cannot write {refused}: {why}\n")
        assert list(ro.iterdir()) == []  # nothing written


def test_no_space_left_exits_74_and_leaves_no_backup(big_seeded: Any, tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("no mount namespace here")
    small = tmp_path / "small"
    small.mkdir()
    # what is left is listed inside the namespace: the tmpfs goes with it
    create = shlex.join([sys.executable, "-m", "dbcli", "-q", "backup", "create", "--dir", str(small)])
    script = f"mount -t tmpfs -o size=256k tmpfs {small}; {create}; echo rc=$?; ls -A {small}"
    done = subprocess.run(["unshare", "-m" if os.geteuid() == 0 else "-rm", "bash", "-c", script],
                          capture_output=True, text=True, timeout=300, check=False)
    assert len(done.stdout.split()) >= 3, (done.stdout, done.stderr)
    rc, lock, record, *more = done.stdout.split()
    assert (rc, lock, more) == ("rc=74", ".lock", []), done.stderr
    # the failed run's record (a manifest only, listed as failed): no .partial-*, no half dump
    assert re.fullmatch(r"\d{8}T\d{6}Z-.+", record)
    assert done.stderr.startswith(f"Error: cannot write {small}/.partial-")
    assert done.stderr.endswith(": no space left on the device\n")


def test_file_size_limit_names_sigxfsz_and_exits_74(cli: Any, big_seeded: Any, tmp_path: Path) -> None:
    """pg_dump killed by SIGXFSZ was `pg_dump failed (exit -25): no message`, exit 1."""
    root = tmp_path / "b"
    done = dbcli_in_shell("ulimit -f 512", ["-q", "backup", "create", "--dir", str(root)])
    assert done.returncode == 74, done.stderr
    assert done.stderr.startswith("Error: pg_dump was killed by SIGXFSZ writing ")
    assert done.stderr.endswith(".dump: the file size limit (ulimit -f) was reached "
                                "(hint: raise the limit for the backup job)\n")
    (row,) = cli("backup", "list", "--dir", str(root), "-f", "json").json()
    assert row["status"] == "failed" and row["size"] == "0 B"
    assert not [p for p in root.iterdir() if p.name.startswith(".partial-")]
