"""Encrypted physical backups and WAL (``backup.encryption_key``): a cluster whose archive_command
encrypts into a local repository (``dbcli --config ... wal archive``), base backups encrypted after
pg_verifybackup checked them, restores to a time and of incremental chains, ``wal archive`` / ``wal
fetch`` of encrypted segments, a wrong key, mixed (plain and encrypted) repositories, and S3."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.backup.test_pitr import incremental_round_trip
from tests.fix_pitr import ArchivingPg, S3ArchivingPg, archiving_cluster, make_backup, restored_rows
from tests.helpers import Result, write_config

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()
SEALED_WAL = b"DBCLIWE1"
SEALED_FILE = b"DBCLIAE1"


@dataclass
class EncryptedArchivingPg(ArchivingPg):
    def settings(self, **backup: Any) -> dict[str, Any]:
        """The profile: this repository, the key, archiving already set up (the server's user reads
        the archiver's config file, not the test's)."""
        return super().settings(**{"wal": False, "encryption_key": KEY, **backup})


@pytest.fixture(scope="module")
def crypto_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EncryptedArchivingPg]:
    from dbcli.backup.physical import server, tools
    from dbcli.config.load import load_config

    base = tmp_path_factory.mktemp("pitr-crypto")
    archiver = base / "archiver"

    def config_dir(made: ArchivingPg) -> Path:
        """The archiver's own directory: the server's user reads its config file."""
        archiver.mkdir()
        tools.give_to(archiver, tools.owner_of(made.cluster.data_dir))
        return archiver

    with archiving_cluster(base, lambda cluster: EncryptedArchivingPg(cluster, 0, base / "repo"),
                           config_dir) as made:
        cfg = load_config(str(archiver / "dbcli.yaml"), None)
        assert "--config" in server.wanted_settings(server.facts(cfg), made.repo, cfg)["archive_command"]
        assert isinstance(made, EncryptedArchivingPg)
        yield made


@pytest.fixture
def crypto_profile(crypto_pg: EncryptedArchivingPg, tmp_path: Path) -> EncryptedArchivingPg:
    crypto_pg.write_config(tmp_path)
    return crypto_pg


def assert_sealed(repo: Path, backup_id: str) -> None:
    """Every file of the backup and of the WAL archive is ciphertext: no tar, gzip or WAL header."""
    files = [p for p in (repo / backup_id / "base").iterdir()]
    assert files and all(p.name.endswith(".enc") for p in files), files
    for path in files:
        head = path.read_bytes()[:512]
        assert head.startswith(SEALED_FILE) and b"ustar" not in head and b"PGDMP" not in head
    segments = [p for p in (repo / "wal").iterdir() if not p.name.startswith(".")]
    assert segments
    for path in segments:
        assert path.read_bytes()[:8] == SEALED_WAL, path
    manifest = json.loads((repo / backup_id / "manifest.json").read_text())
    assert manifest["encryption"]["key_id"] and "AES-256-GCM" in manifest["encryption"]["algorithm"]


def test_encrypted_backup_and_wal_restore_to_a_time(cli: Callable[..., Result], crypto_profile: EncryptedArchivingPg,
                                                    tmp_path: Path) -> None:
    pg = crypto_profile
    pg.sql("CREATE TABLE crypt_time (x int)")
    backup = make_backup(cli)
    between = pg.moment_between_two_inserts("crypt_time")  # ten rows of 1 (T1), then five of 2 (T2)
    assert_sealed(pg.repo, backup["id"])

    res = cli("backup", "restore", "--physical", "--to-time", between.isoformat(), "--data-dir",
              str(tmp_path / "at-t1"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["backup"] == backup["id"]
    assert restored_rows(pg, tmp_path / "at-t1", "SELECT x, count(*) FROM crypt_time GROUP BY x") == [(1, 10)]
    # the key reached the recovering server through its environment: in no file it leaves behind
    assert not any(KEY in p.read_text(errors="replace") for p in (tmp_path / "at-t1").glob("*.conf"))
    assert not (tmp_path / ".at-t1.chain").exists()

    listed = {r["id"]: r for r in cli("backup", "list", "-f", "json").json()}
    assert listed[backup["id"]]["recovers_to"].startswith(backup["end_lsn"] + " .. ")
    status = json.loads(cli("wal", "status", "-f", "json").stdout)
    assert status["segments"] >= 2 and status["missing_after"] is None


def test_verify_an_encrypted_backup_with_a_restore_test(cli: Callable[..., Result],
                                                        crypto_profile: EncryptedArchivingPg) -> None:
    backup = make_backup(cli)
    res = cli("backup", "verify", backup["id"], "--restore-test", "-f", "json")
    assert res.exit_code == 0, res.stderr
    checks = {c["check"]: c for c in res.json()}
    assert checks["pg_verifybackup"]["ok"] is True and checks["restore-test"]["ok"] is True, checks
    leftovers = [p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("dbcli-scratch-")
                 and p.stat().st_uid == os.geteuid()]
    assert not leftovers  # the decrypted copy pg_verifybackup read is gone


@pytest.mark.pg(">= 17")
def test_encrypted_incremental_restores_the_same_data(cli: Callable[..., Result],
                                                      crypto_profile: EncryptedArchivingPg, tmp_path: Path) -> None:
    incremental_round_trip(cli, crypto_profile, tmp_path)  # the parent's backup_manifest decrypted first
    newest = cli("backup", "list", "-f", "json").json()[-1]
    assert_sealed(crypto_profile.repo, newest["id"])


def test_wrong_or_missing_key_exits_3(cli: Callable[..., Result], crypto_pg: EncryptedArchivingPg,
                                      tmp_path: Path) -> None:
    crypto_pg.write_config(tmp_path)
    backup = make_backup(cli)
    crypto_pg.write_config(tmp_path, encryption_key=OTHER_KEY)
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "wrong"))
    assert res.exit_code == 3, res.stderr
    assert "not the key" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert KEY not in res.stderr and OTHER_KEY not in res.stderr
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "wrong.partial").exists()
    assert cli("backup", "verify", backup["id"]).exit_code == 3
    crypto_pg.write_config(tmp_path, encryption_key=None)
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "nokey"))
    assert res.exit_code == 3 and "encryption_key is not set" in res.stderr, res.stderr
    # the archived WAL names its key too: checked before a restore starts (a plain backup's as well)
    from dbcli.backup.physical import location
    from dbcli.errors import ConfigError

    crypto_pg.switch_wal()
    with pytest.raises(ConfigError, match="not the key WAL file"):
        location.check_wal_key(crypto_pg.repo, base64.b64decode(OTHER_KEY))
    location.check_wal_key(crypto_pg.repo, base64.b64decode(KEY))


def test_wal_archive_and_fetch_of_encrypted_segments(cli: Callable[..., Result], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = write_config(tmp_path / "archiver.yaml", {"backup": {"dir": str(repo), "encryption_key": KEY}})
    other = write_config(tmp_path / "other.yaml", {"backup": {"dir": str(repo), "encryption_key": OTHER_KEY}})
    segment = tmp_path / "seg"
    name = "0000000100000000000000B0"
    plain = os.urandom(4096) + b"a" * 8192
    segment.write_bytes(plain)

    def wal(*args: str, conf: Path | None = config) -> Result:
        return cli(*(["--config", str(conf)] if conf else []), "wal", *args)

    assert wal("archive", "--dir", str(repo), str(segment), name).exit_code == 0
    stored = (repo / "wal" / name).read_bytes()
    assert stored.startswith(SEALED_WAL) and plain[:4096] not in stored
    again = wal("archive", "--dir", str(repo), str(segment), name)
    assert again.exit_code == 0, again.stderr  # the same content: the ciphertext differs, the digest not
    assert (repo / "wal" / name).read_bytes() == stored
    segment.write_bytes(b"b" * 8192)
    res = wal("archive", "--dir", str(repo), str(segment), name)
    assert res.exit_code == 7 and "different content" in res.stderr
    assert [p.name for p in (repo / "wal").iterdir()] == [name]

    assert wal("fetch", "--dir", str(repo), name, str(tmp_path / "fetched")).exit_code == 0
    assert (tmp_path / "fetched").read_bytes() == plain
    res = wal("fetch", "--dir", str(repo), name, str(tmp_path / "nokey"), conf=None)
    assert res.exit_code == 3 and "encryption_key is not set" in res.stderr
    res = wal("fetch", "--dir", str(repo), name, str(tmp_path / "other"), conf=other)
    assert res.exit_code == 3 and "not the key" in res.stderr
    assert not (tmp_path / "nokey").exists() and not (tmp_path / "other").exists()

    # a plain segment from before encryption was turned on: fetched as it is, compared as it is
    old = "0000000100000000000000AF"
    segment.write_bytes(b"old" * 100)
    assert wal("archive", "--dir", str(repo), str(segment), old, conf=None).exit_code == 0
    assert wal("archive", "--dir", str(repo), str(segment), old).exit_code == 0
    assert wal("fetch", "--dir", str(repo), old, str(tmp_path / "old")).exit_code == 0
    assert (tmp_path / "old").read_bytes() == b"old" * 100

    damaged = bytearray(stored)
    damaged[-20] ^= 1
    (repo / "wal" / name).write_bytes(bytes(damaged))
    res = wal("fetch", "--dir", str(repo), name, str(tmp_path / "damaged"))
    assert res.exit_code == 8 and "damaged" in res.stderr and not (tmp_path / "damaged").exists()


def test_wal_archive_and_fetch_on_s3_encrypted(cli: Callable[..., Result], s3_server: Any, tmp_path: Path) -> None:
    bucket = "pitr-crypto"
    s3_server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/enc"
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": url, "s3": s3_server.settings(), "encryption_key": KEY}})
    segment = tmp_path / "seg"
    name = "0000000100000000000000C0"
    segment.write_bytes(b"c" * 9000)
    assert cli("wal", "archive", str(segment), name).exit_code == 0
    body = s3_server.client().get_object(Bucket=bucket, Key=f"enc/wal/{name}")["Body"].read()
    assert body.startswith(SEALED_WAL) and b"c" * 100 not in body
    again = cli("wal", "archive", str(segment), name)
    assert again.exit_code == 0, again.stderr
    segment.write_bytes(b"d" * 9000)
    assert cli("wal", "archive", str(segment), name).exit_code == 7
    assert cli("wal", "fetch", name, str(tmp_path / "fetched")).exit_code == 0
    assert (tmp_path / "fetched").read_bytes() == b"c" * 9000


def test_encrypted_base_backup_on_s3_with_a_plain_archive(cli: Callable[..., Result],
                                                          s3_archiving_pg: S3ArchivingPg, tmp_path: Path) -> None:
    """A mixed repository: the base backup encrypted, the WAL archived before as it was (plain)."""
    pg = s3_archiving_pg
    pg.write_config(tmp_path, encryption_key=KEY)
    pg.sql("CREATE TABLE crypt_s3 (x int)")
    backup = make_backup(cli)
    keys = pg.s3.keys(pg.bucket, f"pitr/{backup['id']}/base/")
    assert keys and all(k.endswith(".enc") for k in keys), keys
    head = pg.s3.client().get_object(Bucket=pg.bucket, Key=keys[0])["Body"].read(8)
    assert head == SEALED_FILE
    pg.sql("INSERT INTO crypt_s3 SELECT 1 FROM generate_series(1, 3)")
    pg.switch_wal()
    res = cli("backup", "restore", "--physical", "--latest", "--data-dir", str(tmp_path / "s3"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert restored_rows(pg, tmp_path / "s3", "SELECT count(*) FROM crypt_s3") == [(3,)]
    res = cli("backup", "verify", backup["id"], "-f", "json")
    assert res.exit_code == 0, res.stderr


def test_wal_receive_encrypts_what_it_streams(crypto_pg: EncryptedArchivingPg, tmp_path: Path) -> None:
    import signal

    from tests.backup.test_backup_process import Running

    repo = tmp_path / "received"
    settings = crypto_pg.settings(dir=str(repo))
    write_config(tmp_path / "dbcli.yaml", {**settings, "data_dir": str(tmp_path / "data")})
    run = Running(["wal", "receive", "--slot", "pitr_crypto"], None, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "data" / "wal-spool").glob("*.partial")):
            assert run.proc.poll() is None and time.monotonic() < deadline, run.lines
            time.sleep(0.1)
        crypto_pg.sql("SELECT pg_current_xact_id()")
        crypto_pg.sql("SELECT pg_switch_wal()")
        while not [p for p in (repo / "wal").glob("0*")] if (repo / "wal").is_dir() else True:
            assert run.proc.poll() is None and time.monotonic() < deadline, run.lines
            time.sleep(0.1)
    finally:
        run.proc.send_signal(signal.SIGTERM)
        code, _out, err = run.finish()
        crypto_pg.sql("SELECT pg_drop_replication_slot('pitr_crypto')")
    assert code == 0, err
    segments = list((repo / "wal").glob("0*"))
    assert segments and all(p.read_bytes()[:8] == SEALED_WAL for p in segments)


@pytest.mark.pg(">= 17")
def test_encrypted_incremental_on_s3(cli: Callable[..., Result], s3_archiving_pg: S3ArchivingPg,
                                     tmp_path: Path) -> None:
    s3_archiving_pg.write_config(tmp_path, encryption_key=KEY)
    try:  # the parent's backup_manifest.enc downloaded and decrypted into the private staging directory
        incremental_round_trip(cli, s3_archiving_pg, tmp_path)
    finally:  # the cluster is shared with test_pitr_s3, which makes this table too
        s3_archiving_pg.sql("DROP TABLE IF EXISTS pitr_incr")
