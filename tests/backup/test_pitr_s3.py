"""Point-in-time recovery with an S3 repository (versitygw, tests/fix_s3.py): base backups uploaded
there, WAL archived there by ``dbcli wal archive`` as the server's archive_command, restores that
download the chain and fetch the WAL with ``dbcli wal fetch``; a kill -9 during the upload lists
nothing; ``wal archive`` on S3 refuses a segment with other content (exit 7)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.backup.test_backup_process import Running
from tests.backup.test_pitr import incremental_round_trip
from tests.fix_pitr import S3ArchivingPg, make_backup, restored_rows
from tests.fix_s3 import SECRET_KEY, S3Server
from tests.helpers import Result, write_config


@pytest.fixture
def s3_pitr(s3_archiving_pg: S3ArchivingPg, tmp_path: Path) -> S3ArchivingPg:
    s3_archiving_pg.write_config(tmp_path)
    return s3_archiving_pg


def test_restore_to_a_time_between_two_inserts_from_s3(cli: Callable[..., Result], s3_pitr: S3ArchivingPg,
                                                       tmp_path: Path) -> None:
    pg = s3_pitr
    pg.sql("CREATE TABLE pitr_s3_time (x int)")
    backup = make_backup(cli, "--tag", "s3")
    assert backup["path"] == f"{pg.url}/{backup['id']}" and backup["kind"] == "physical"
    keys = pg.s3.keys(pg.bucket, f"pitr/{backup['id']}/")
    assert f"pitr/{backup['id']}/manifest.json" in keys and f"pitr/{backup['id']}/base/backup_manifest" in keys
    assert any(k.startswith(f"pitr/{backup['id']}/base/base.tar") for k in keys)
    between = pg.moment_between_two_inserts("pitr_s3_time")

    target = tmp_path / "at-t1"
    res = cli("backup", "restore", "--physical", "--to-time", between.isoformat(), "--data-dir", str(target),
              "--format", "json")
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["backup"] == backup["id"] and out["replay_s"] > 0
    assert not (tmp_path / "at-t1.partial").exists() and not (tmp_path / ".at-t1.chain").exists()
    assert restored_rows(pg, target, "SELECT x, count(*) FROM pitr_s3_time GROUP BY x") == [(1, 10)]
    # the secret reached the recovering server through its environment: in no file it leaves behind
    assert not any(SECRET_KEY in p.read_text(errors="replace") for p in target.glob("*.conf"))
    assert SECRET_KEY not in res.stdout + res.stderr

    listed = {r["id"]: r for r in cli("backup", "list", "-f", "json").json()}
    assert listed[backup["id"]]["targets"] == "postgres (physical)"
    assert listed[backup["id"]]["recovers_to"].startswith(backup["end_lsn"] + " .. ")
    res = cli("backup", "verify", backup["id"], "--restore-test", "-f", "json")
    assert res.exit_code == 0, res.stderr
    checks = {c["check"]: c for c in res.json()}
    assert checks["pg_verifybackup"]["ok"] is True and checks["restore-test"]["ok"] is True, checks
    assert not list(Path(tempfile.gettempdir()).glob(".restore-test-*"))
    status = json.loads(cli("wal", "status", "-f", "json").stdout)
    assert status["dir"] == f"{pg.url}/wal" and status["segments"] >= 2 and status["physical_backups"] >= 1
    assert status["missing_after"] is None


@pytest.mark.pg(">= 17")
def test_incremental_on_s3_is_smaller_and_restores_the_same_data(cli: Callable[..., Result],
                                                                 s3_pitr: S3ArchivingPg, tmp_path: Path) -> None:
    incremental_round_trip(cli, s3_pitr, tmp_path)  # its manifest downloaded, the chain downloaded and combined


def test_kill_during_the_upload_lists_nothing(cli: Callable[..., Result], s3_pitr: S3ArchivingPg,
                                              tmp_path: Path) -> None:
    pg = s3_pitr
    before = [r["id"] for r in cli("backup", "list", "-f", "json").json()]
    run = Running(["backup", "create", "--physical"], "manifest", tmp_path)  # every file uploaded, no manifest
    run.wait_for("dbcli-test: paused at manifest")
    pid = run.proc.pid
    run.kill()
    staging = list(Path(tempfile.gettempdir()).glob(f"dbcli-basebackup-{pid}-*"))
    assert staging  # what pg_basebackup wrote, left by the kill
    killed = {k.split("/")[1] for k in pg.s3.keys(pg.bucket, "pitr/")} - set(before) - {"wal", ".lock"}
    assert len(killed) == 1  # its objects are there, without a manifest...
    assert [r["id"] for r in cli("backup", "list", "-f", "json").json()] == before  # ...and not listed
    again = cli("backup", "create", "--physical", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["cleaned_leftovers"] == 1
    assert not any(p.exists() for p in staging)
    assert not pg.s3.keys(pg.bucket, f"pitr/{killed.pop()}/")
    assert [r["id"] for r in cli("backup", "list", "-f", "json").json()] == [*before, again.json()["id"]]


def test_a_segment_archived_twice_with_other_content_is_refused_on_s3(cli: Callable[..., Result], tmp_path: Path,
                                                                     s3_server: S3Server, s3_bucket: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": f"s3://{s3_bucket}/r", "s3": s3_server.settings()}})
    segment = tmp_path / "seg"
    name = "0000000100000000000000A0"
    segment.write_bytes(b"a" * 8192)
    assert cli("wal", "archive", str(segment), name).exit_code == 0
    again = cli("wal", "archive", str(segment), name)
    assert again.exit_code == 0, again.stderr  # the server retries after a crash: same content is fine
    segment.write_bytes(b"b" * 8192)
    res = cli("wal", "archive", str(segment), name)
    assert res.exit_code == 7
    assert name in res.stderr and "different content" in res.stderr and len(res.stderr.splitlines()) == 1
    assert s3_server.keys(s3_bucket) == [f"r/wal/{name}"]
    assert cli("wal", "archive", str(segment), "../etc").exit_code == 5
    assert cli("wal", "fetch", name, str(tmp_path / "fetched")).exit_code == 0
    assert (tmp_path / "fetched").read_bytes() == b"a" * 8192
    assert cli("wal", "fetch", "0000000100000000000000A1", str(tmp_path / "x")).exit_code == 6
    assert not (tmp_path / "x").exists()
    # a destination that cannot be written: one line naming it (was "unexpected FileNotFoundError")
    res = cli("wal", "fetch", name, str(tmp_path / "no-dir" / "seg"))
    assert res.exit_code == 1 and "unexpected" not in res.stderr, res.stderr
    assert f"cannot write {tmp_path / 'no-dir' / 'seg'}" in res.stderr and len(res.stderr.splitlines()) == 1


def _wait(condition: Callable[[], bool], run: Running, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.proc.poll() is None, run.lines
        assert time.monotonic() < deadline, f"{what}: {run.lines}"
        time.sleep(0.1)


def test_wal_receive_uploads_segments_and_a_broken_stream_exits_4(s3_archiving_pg: S3ArchivingPg,
                                                                  tmp_path: Path) -> None:
    import signal

    pg = s3_archiving_pg
    settings = pg.settings(dir=f"s3://{pg.bucket}/received")
    settings["data_dir"] = str(tmp_path / "data")
    write_config(tmp_path / "dbcli.yaml", settings)
    slot = "pitr_s3_recv"
    active = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active"
    try:
        run = Running(["wal", "receive", "--slot", slot], None, tmp_path)
        try:
            _wait(lambda: pg.sql(active, (slot,))[0][0] == 1, run, "pg_receivewal did not start streaming")
            pg.switch_wal()
            _wait(lambda: bool(pg.s3.keys(pg.bucket, "received/wal/")), run, "no segment uploaded")
        finally:
            run.proc.send_signal(signal.SIGTERM)  # systemd's stop
            code, _out, err = run.finish()
        assert code == 0, err
        assert all(k.rsplit("/", 1)[-1][:8].isalnum() for k in pg.s3.keys(pg.bucket, "received/wal/"))

        # the stream ends under it (the walsender is terminated): one line, exit 4, not pg_receivewal's 1
        run = Running(["wal", "receive", "--slot", slot], None, tmp_path)
        _wait(lambda: pg.sql(active, (slot,))[0][0] == 1, run, "pg_receivewal did not start streaming again")
        pg.sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        code, _out, err = run.finish()
        assert code == 4, err
        assert "pg_receivewal" in err and len(err.strip().splitlines()) == 1, err
    finally:
        time.sleep(0.5)
        pg.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,))


def test_wal_receive_ends_when_a_segment_cannot_be_uploaded(s3_archiving_pg: S3ArchivingPg, tmp_path: Path) -> None:
    """A segment the upload refuses (here: other content under its name, exit 7; an endpoint gone is
    exit 4) was kept as an error to report at the next stop, while the run streamed on for ever into a
    spool nobody uploaded: it ends the run, one line and the upload's code, for the supervisor to see."""
    pg = s3_archiving_pg
    settings = pg.settings(dir=f"s3://{pg.bucket}/refused")
    settings["data_dir"] = str(tmp_path / "data")
    write_config(tmp_path / "dbcli.yaml", settings)
    slot = "pitr_s3_refused"
    spool = tmp_path / "data" / "wal-spool"
    run = Running(["wal", "receive", "--slot", slot], None, tmp_path)
    try:
        _wait(lambda: spool.is_dir() and any(p.name.endswith(".partial") for p in spool.iterdir()), run,
              "pg_receivewal did not start streaming")
        # the segment it streams now: its name taken by other content before it completes
        (current,) = [p.name.removesuffix(".partial") for p in spool.iterdir() if p.name.endswith(".partial")]
        pg.s3.client().put_object(Bucket=pg.bucket, Key=f"refused/wal/{current}", Body=b"another server's")
        pg.switch_wal()
        deadline = time.monotonic() + 30
        while run.proc.poll() is None:
            assert time.monotonic() < deadline, ("wal receive streams on past a refused upload", current,
                                                 sorted(p.name for p in spool.iterdir()), run.lines)
            time.sleep(0.2)
        code, _out, err = run.finish()
        assert code == 7, err
        assert current in err and "different content" in err and len(err.strip().splitlines()) == 1, err
        assert (spool / current).is_file()  # kept for the next run
    finally:
        if run.proc.poll() is None:
            run.kill()
        time.sleep(0.5)
        pg.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,))


def test_a_bucket_in_another_region_names_it() -> None:
    """issue 15: a request signed for the wrong region read as "refused the credentials". versitygw
    accepts any region, so this replays AWS's own answer (its documented error body) through botocore."""
    from botocore.exceptions import ClientError

    from dbcli.backup.s3_client import translate
    from dbcli.errors import ConfigError

    answer = {"Error": {"Code": "AuthorizationHeaderMalformed", "Region": "eu-west-1",
                        "Message": "The authorization header is malformed; the region 'us-east-1' is wrong; "
                                   "expecting 'eu-west-1'"},
              "ResponseMetadata": {"HTTPStatusCode": 400}}
    error = translate(ClientError(answer, "ListObjectsV2"), "s3://bk/x")
    assert isinstance(error, ConfigError) and "region eu-west-1" in error.message
    assert "credentials" not in error.message
    redirect = {"Error": {"Code": "PermanentRedirect", "Message": "The bucket you are attempting to access must "
                          "be addressed using the specified endpoint."},
                "ResponseMetadata": {"HTTPStatusCode": 301, "HTTPHeaders": {"x-amz-bucket-region": "ap-south-1"}}}
    error = translate(ClientError(redirect, "GetObject"), "s3://bk/x")
    assert isinstance(error, ConfigError) and "region ap-south-1" in error.message
    wrong_key = {"Error": {"Code": "InvalidAccessKeyId", "Message": "The AWS Access Key Id you provided does not "
                           "exist in our records."}, "ResponseMetadata": {"HTTPStatusCode": 403}}
    error = translate(ClientError(wrong_key, "GetObject"), "s3://bk/x")
    assert isinstance(error, ConfigError) and "refused the credentials" in error.message
