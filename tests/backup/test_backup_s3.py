"""Backups in S3-compatible object storage (``backup.dir: s3://bucket/prefix``), against a real
server (Versity S3 Gateway, tests/fix_s3.py): the round trip, kill -9, the lock, credentials."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.backup import test_backup as logical
from tests.backup import test_backup_jobs as jobs_tests
from tests.backup.test_backup_process import Running
from tests.fix_backup import TEST_KEY, profile_settings
from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.fix_s3 import SECRET_KEY, S3Server, free_port
from tests.helpers import write_config

empty_target = logical.empty_target  # the fixture, shared with the local round trip
scratch_root = jobs_tests.scratch_root  # the fixture: TMPDIR of the test
scratch_dirs = jobs_tests.scratch_dirs


def _s3_settings(server: S3Server, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"dir": f"s3://{bucket}/dbcli", "s3": server.settings(), **extra}


@pytest.fixture
def s3_profile(seeded: Any, tmp_path: Path, pg_server: PgServer, mongo_server: MongoServer, s3_server: S3Server,
               s3_bucket: str) -> str:
    """./dbcli.yaml: the seeded databases, backups in s3://<bucket>/dbcli; returns the bucket."""
    from psycopg.conninfo import conninfo_to_dict

    settings = profile_settings(pg_server, conninfo_to_dict(seeded.postgres.dsn)["dbname"], mongo_server,
                                seeded.mongo.database)
    write_config(tmp_path / "dbcli.yaml", {**settings, "backup": _s3_settings(s3_server, s3_bucket)})
    return s3_bucket


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_create_list_verify_restore_prune_in_a_bucket(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                                      mongo_server: MongoServer, s3_server: S3Server,
                                                      s3_bucket: str, empty_target: tuple[str, str],
                                                      encrypted: bool) -> None:
    from psycopg.conninfo import conninfo_to_dict

    src_db = conninfo_to_dict(seeded.postgres.dsn)["dbname"]
    backup = _s3_settings(s3_server, s3_bucket, **({"encryption_key": TEST_KEY} if encrypted else {}))
    write_config(tmp_path / "dbcli.yaml", {"backup": backup, "profiles": {
        "src": profile_settings(pg_server, src_db, mongo_server, seeded.mongo.database),
        "dst": profile_settings(pg_server, empty_target[0], mongo_server, empty_target[1])}})

    made = cli("-p", "src", "backup", "create", "--tag", "nightly", "-f", "json")
    assert made.exit_code == 0, made.stderr
    summary = made.json()
    assert summary["status"] == "ok" and summary["encrypted"] is encrypted
    assert summary["path"] == f"s3://{s3_bucket}/dbcli/{summary['id']}"
    assert summary["tables"] == 9 and summary["collections"] == 3
    keys = s3_server.keys(s3_bucket)
    prefix = f"dbcli/{summary['id']}/"
    assert f"{prefix}manifest.json" in keys
    assert any(k.startswith(f"{prefix}postgres/") and k.endswith(".dump" + (".enc" if encrypted else ""))
               for k in keys)
    assert f"{prefix}mongo/{seeded.mongo.database}/user_activities.bson.gz" + (".enc" if encrypted else "") in keys
    assert "dbcli/.lock" not in keys  # released
    assert s3_server.uploads(s3_bucket) == []

    listed = cli("-p", "src", "backup", "list", "-f", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [(r["id"], r["status"], r["verified"]) for r in listed.json()] == [(summary["id"], "ok", "never")]

    checked = cli("-p", "src", "backup", "verify", "--latest", "--restore-test", "-f", "json")
    assert checked.exit_code == 0, checked.stderr
    assert all(c["ok"] for c in checked.json())
    assert {c["check"] for c in checked.json()} == {"manifest", "checksum", "pg_restore", "metadata", "bson",
                                                    "restore-test"}
    assert f"{prefix}verify.json" in s3_server.keys(s3_bucket)
    assert cli("-p", "src", "backup", "list", "-f", "json").json()[0]["verified"].endswith("(restore-test)")

    restored = cli("-p", "src", "backup", "restore", summary["id"], "--profile", "dst", "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    assert restored.json() and all(r["ok"] for r in restored.json())
    assert logical._pg_counts(pg_server, empty_target[0]) == logical._pg_counts(pg_server, src_db)
    assert (logical._mongo_counts(mongo_server, empty_target[1])
            == logical._mongo_counts(mongo_server, seeded.mongo.database))

    second = cli("-p", "src", "backup", "create", "-f", "json")
    assert second.exit_code == 0, second.stderr
    pruned = cli("-p", "src", "backup", "prune", "--keep-last", "1", "-f", "json")
    assert pruned.exit_code == 0, pruned.stderr
    assert {r["id"]: r["action"] for r in pruned.json()} == {summary["id"]: "remove", second.json()["id"]: "keep"}
    assert not [k for k in s3_server.keys(s3_bucket) if k.startswith(prefix)]
    assert [r["id"] for r in cli("-p", "src", "backup", "list", "-f", "json").json()] == [second.json()["id"]]


def test_dir_option_takes_a_url(cli: Any, s3_profile: str, s3_server: S3Server, s3_bucket: str) -> None:
    made = cli("backup", "create", "--dir", f"s3://{s3_bucket}/other", "-f", "json")
    assert made.exit_code == 0, made.stderr
    assert made.json()["path"].startswith(f"s3://{s3_bucket}/other/")
    assert cli("backup", "list", "-f", "json").json() == []  # backup.dir's prefix is another repository
    assert len(cli("backup", "list", "--dir", f"s3://{s3_bucket}/other", "-f", "json").json()) == 1


def test_damaged_object_fails_verification(cli: Any, s3_profile: str, s3_server: S3Server) -> None:
    made = cli("backup", "create", "-f", "json").json()
    dump = next(k for k in s3_server.keys(s3_profile) if k.endswith(".dump"))
    body = s3_server.client().get_object(Bucket=s3_profile, Key=dump)["Body"].read()
    s3_server.client().put_object(Bucket=s3_profile, Key=dump, Body=body[:-100] + bytes(100))
    checked = cli("backup", "verify", made["id"])
    assert checked.exit_code == 8
    assert "checksum mismatch" in checked.stderr
    restored = cli("backup", "restore", made["id"], "--drop")
    assert restored.exit_code == 8, restored.stderr


@pytest.mark.parametrize("stage", ["pg_dump", "mongo", "manifest"])
def test_kill_during_the_upload_lists_nothing_and_the_next_run_cleans(cli: Any, s3_profile: str, tmp_path: Path,
                                                                      s3_server: S3Server, stage: str) -> None:
    run = Running(["backup", "create"], stage, tmp_path)
    run.wait_for(f"dbcli-test: paused at {stage}")
    time.sleep(0.5)  # the upload goes on while the hook holds the main thread
    run.kill()
    # a killed run's multipart upload (as a dump larger than one part leaves it)
    client = s3_server.client()
    client.create_multipart_upload(Bucket=s3_profile, Key="dbcli/20260101T000000Z-local/postgres/x.dump")
    assert "dbcli/.lock" in s3_server.keys(s3_profile)  # the lock object outlives its holder
    listed = cli("backup", "list", "-f", "json")
    assert (listed.exit_code, listed.json()) == (0, [])
    assert cli("backup", "verify", "--latest").exit_code == 6

    again = cli("backup", "create", "-f", "json")  # the dead holder's lock is stale: taken over
    assert again.exit_code == 0, again.stderr
    assert again.json()["cleaned_leftovers"] >= 1
    assert s3_server.uploads(s3_profile) == []
    prefixes = {k.split("/")[1] for k in s3_server.keys(s3_profile) if k.count("/") >= 2}
    assert prefixes == {again.json()["id"]}
    assert [r["status"] for r in cli("backup", "list", "-f", "json").json()] == ["ok"]


def test_prune_cleans_leftovers_too(cli: Any, s3_profile: str, s3_server: S3Server) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_profile, Key="dbcli/20260101T000000Z-local/postgres/x.dump", Body=b"half")
    client.create_multipart_upload(Bucket=s3_profile, Key="dbcli/20260101T000000Z-local/mongo/y.bson")
    assert cli("backup", "create").exit_code == 0
    client.put_object(Bucket=s3_profile, Key="dbcli/20260102T000000Z-local/postgres/x.dump", Body=b"half")
    client.create_multipart_upload(Bucket=s3_profile, Key="dbcli/20260102T000000Z-local/mongo/y.bson")
    assert cli("backup", "prune", "--keep-last", "1").exit_code == 0
    assert s3_server.uploads(s3_profile) == []
    assert not [k for k in s3_server.keys(s3_profile) if "20260102T000000Z" in k]


def test_second_run_exits_75_naming_the_holder(cli: Any, s3_profile: str, tmp_path: Path) -> None:
    first = Running(["backup", "create"], "locked", tmp_path)
    try:
        first.wait_for("dbcli-test: paused at locked")
        start = time.monotonic()
        second = cli("backup", "create")
        assert time.monotonic() - start < 10
        assert second.exit_code == 75, second.stderr
        assert second.stderr.startswith(f"Error: another backup run holds s3://{s3_profile}/dbcli/.lock (backup "
                                        f"create by pid {first.proc.pid} on {socket.gethostname()} since ")
        assert cli("backup", "prune", "--keep-last", "1").exit_code == 75
    finally:
        first.kill()
    assert cli("-q", "backup", "create").exit_code == 0  # its holder is gone: the lock is stale


def test_wrong_secret_exits_3_without_showing_it(cli: Any, s3_profile: str, s3_server: S3Server,
                                                 tmp_path: Path) -> None:
    wrong = "not-the-secret-8d0c1a"
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql:///x"}, "backup": {
        "dir": f"s3://{s3_profile}/dbcli", "s3": s3_server.settings(secret_access_key=wrong)}})
    for args in (["backup", "list"], ["backup", "create"], ["backup", "prune", "--keep-last", "1"]):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "refused the credentials (SignatureDoesNotMatch)" in result.stderr
        assert result.stderr.count("\n") == 1
        assert wrong not in result.stderr + result.stdout and SECRET_KEY not in result.stderr + result.stdout


def test_secret_from_a_file_or_the_environment(cli: Any, s3_profile: str, s3_server: S3Server, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "s3.secret"
    secret_file.write_text(SECRET_KEY + "\n")
    secret_file.chmod(0o600)
    settings = s3_server.settings(secret_access_key=None, secret_access_key_file=str(secret_file))
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": f"s3://{s3_profile}/dbcli", "s3": settings}})
    assert cli("backup", "list").exit_code == 0
    monkeypatch.setenv("DBCLI_TEST_S3_SECRET", SECRET_KEY)
    settings = s3_server.settings(secret_access_key="${DBCLI_TEST_S3_SECRET}")
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": f"s3://{s3_profile}/dbcli", "s3": settings}})
    shown = cli("config", "show", "-f", "json")
    assert shown.exit_code == 0 and SECRET_KEY not in shown.stdout
    assert cli("backup", "list").exit_code == 0


def test_endpoint_down_exits_4_within_the_timeout(cli: Any, s3_server: S3Server, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": "s3://bk/dbcli",
                                                      "s3": s3_server.settings(endpoint_url=down, timeout=2)}})
    start = time.monotonic()
    result = cli("backup", "list")
    assert result.exit_code == 4, result.stderr
    assert time.monotonic() - start < 20
    assert result.stderr.startswith("Error: s3://bk/dbcli: the S3 endpoint does not answer")


def test_refused_upload_is_one_line_exit_73(cli: Any, s3_profile: str, s3_server: S3Server, tmp_path: Path) -> None:
    """A user who may read the bucket but not write to it: list works, create exits 73; one who may
    not even read it: exit 3."""
    import json

    s3_server.add_user("dbcli-reader", "reader-secret-2b7")
    settings = s3_server.settings(access_key_id="dbcli-reader", secret_access_key="reader-secret-2b7")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql:///x"}, "backup": {
        "dir": f"s3://{s3_profile}/dbcli", "s3": settings}})
    refused = cli("backup", "list")
    assert refused.exit_code == 3
    assert refused.stderr.startswith(f"Error: s3://{s3_profile}/dbcli: the S3 server refused access (AccessDenied)")
    s3_server.client().put_bucket_policy(Bucket=s3_profile, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": ["dbcli-reader"]},
            "Action": ["s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": [f"arn:aws:s3:::{s3_profile}", f"arn:aws:s3:::{s3_profile}/*"]}]}))
    assert cli("backup", "list").exit_code == 0
    made = cli("backup", "create")
    assert made.exit_code == 73, made.stderr
    assert made.stderr == f"Error: s3://{s3_profile}/dbcli: the S3 server refused the upload (AccessDenied)\n"


def test_missing_bucket_is_one_line_exit_3(cli: Any, s3_server: S3Server, tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": "s3://no-such-bucket-x/dbcli",
                                                      "s3": s3_server.settings()}})
    result = cli("backup", "create")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: s3://no-such-bucket-x/dbcli: bucket does not exist")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("value", "message"), [
    ("s3://", "backup.dir: must be a path or s3://bucket/prefix, got 's3://'"),
    ("gs://bucket/x", "backup.dir: must be a path or s3://bucket/prefix, got 'gs://bucket/x'"),
])
def test_bad_repository_url_is_a_config_error(cli: Any, tmp_path: Path, value: str, message: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": value}})
    result = cli("backup", "list")
    assert result.exit_code == 3
    assert message in result.stderr


def test_multipart_upload_streams_and_aborts(s3_server: S3Server, s3_bucket: str) -> None:
    """Parts go out as they fill (20 MiB: three parts), the object is what was written; an aborted
    upload leaves nothing."""
    import hashlib
    import os

    from dbcli.backup.s3_client import connect
    from dbcli.backup.s3_io import MultipartSink
    from dbcli.config.model import S3Config

    client = connect(S3Config(**s3_server.settings()))
    data = os.urandom(1 << 20) * 20
    sink = MultipartSink(client, s3_bucket, "big/object")
    for at in range(0, len(data), 300_000):
        sink.write(data[at:at + 300_000])
    sink.commit()
    assert sink.written == len(data) and sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    stored = client.get_object(Bucket=s3_bucket, Key="big/object")["Body"].read()
    assert stored == data
    aborted = MultipartSink(client, s3_bucket, "big/aborted")
    aborted.write(data)
    aborted.abort()
    assert s3_server.keys(s3_bucket) == ["big/object"] and s3_server.uploads(s3_bucket) == []


def test_nested_and_sibling_prefixes_keep_to_themselves(cli: Any, s3_profile: str, s3_server: S3Server) -> None:
    """``s3://bk/dbcli`` and ``s3://bk/dbclix`` do not see each other's backups; a repository at the bucket's
    top level cleans its own leftovers but leaves alone the upload another repository under it is making."""
    made = cli("backup", "create", "--dir", f"s3://{s3_profile}/dbclix/", "-f", "json")
    assert made.exit_code == 0, made.stderr
    assert cli("backup", "list", "-f", "json").json() == []
    assert [r["id"] for r in cli("backup", "list", "--dir", f"s3://{s3_profile}/dbclix", "-f", "json").json()] == [
        made.json()["id"]]
    client = s3_server.client()
    theirs = "dbcli/20260101T000000Z-local/postgres/x.dump"  # the run of the repository at s3://bucket/dbcli
    client.create_multipart_upload(Bucket=s3_profile, Key=theirs)
    client.put_object(Bucket=s3_profile, Key="20260101T000000Z-local/postgres/x.dump", Body=b"half")
    client.create_multipart_upload(Bucket=s3_profile, Key="20260101T000000Z-local/mongo/y.bson")
    top = cli("backup", "create", "--dir", f"s3://{s3_profile}", "-f", "json")
    assert top.exit_code == 0, top.stderr
    assert top.json()["cleaned_leftovers"] == 1
    assert s3_server.uploads(s3_profile) == [theirs]
    assert not [k for k in s3_server.keys(s3_profile) if k.startswith("20260101T000000Z-local/")]
    assert [r["id"] for r in cli("backup", "list", "--dir", f"s3://{s3_profile}", "-f", "json").json()] == [
        top.json()["id"]]


def test_calls_fail_at_once_after_the_endpoint_stopped_answering(s3_server: S3Server) -> None:
    """An endpoint that accepts connections and never answers: the first call gives up after its tries,
    every later one (the clean-up of a failed run, the lock's release) at once, not after its own."""
    import socket as sockets

    from botocore.exceptions import ReadTimeoutError

    from dbcli.backup.s3_client import connect
    from dbcli.config.model import S3Config

    with sockets.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = connect(S3Config(**s3_server.settings(endpoint_url=endpoint, timeout=0.5)))
        start = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.list_objects_v2(Bucket="bk")
        assert time.monotonic() - start < 10
        start = time.monotonic()
        for _ in range(3):
            with pytest.raises(ReadTimeoutError):
                client.abort_multipart_upload(Bucket="bk", Key="x", UploadId="y")
        assert time.monotonic() - start < 0.2


def test_lock_expiry_is_judged_by_the_servers_clock(cli: Any, s3_profile: str, s3_server: S3Server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock just written by a host whose clock is far behind (its expiry already past here) is held,
    not stale; one that nobody rewrote for longer than the expiry, by the server's clock, is taken."""
    import json

    from dbcli.backup import s3_lock
    from dbcli.backup.s3_client import S3Location, connect
    from dbcli.backup.store import utc_now
    from dbcli.config.model import S3Config

    held = {"owner": "x", "pid": 4242, "host": "db2.elsewhere", "command": "backup create",
            "started_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:10:00Z"}
    s3_server.client().put_object(Bucket=s3_profile, Key="dbcli/.lock", Body=json.dumps(held).encode())
    second = cli("backup", "create")
    assert second.exit_code == 75, second.stderr
    assert "backup create by pid 4242 on db2.elsewhere" in second.stderr

    monkeypatch.setattr(s3_lock, "EXPIRY", dt.timedelta(seconds=1))
    client = connect(S3Config(**s3_server.settings()))
    location = S3Location(s3_profile, "dbcli")
    # wait by the server's clock, the one judged: its Date lags (refreshed once a second, later under
    # load), so a fixed sleep of a few seconds here once found the lock 1 s old and held (exit 75)
    deadline = time.monotonic() + 30
    while (age := _lock_age(client, location)) <= 2:
        assert time.monotonic() < deadline, f"the server's clock says the lock is {age} s old"
        time.sleep(0.2)
    with s3_lock.s3_locked(client, location, "backup create", utc_now):
        assert json.loads(s3_server.client().get_object(Bucket=s3_profile, Key="dbcli/.lock")["Body"].read())[
            "pid"] != 4242


def _lock_age(client: Any, location: Any) -> float:
    """Seconds since the lock was written, by the server's clock (its Date against the Last-Modified)."""
    from email.utils import parsedate_to_datetime

    head = client.head_object(Bucket=location.bucket, Key=location.key(".lock"))
    return float((parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
                  - head["LastModified"]).total_seconds())


def test_a_lock_put_whose_answer_was_lost_is_still_taken(s3_server: S3Server, s3_bucket: str) -> None:
    """The conditional PUT made the lock but its answer was lost (a timeout): botocore sends it again,
    and the retry gets 412 from the run's own lock. The run went on to report "another backup run
    holds" itself (exit 75) and left its lock behind for 10 minutes; it takes the lock."""
    from dbcli.backup import s3_lock
    from dbcli.backup.s3_client import S3Location, connect
    from dbcli.backup.store import utc_now
    from dbcli.config.model import S3Config

    client = connect(S3Config(**s3_server.settings()))
    sent: list[int] = []

    def lose_first_answer(attempts: int, **_: Any) -> float | None:
        sent.append(attempts)
        return 0 if attempts == 1 else None  # retry at once the PUT that succeeded, as after a timeout

    client.meta.events.register("needs-retry.s3.PutObject", lose_first_answer)
    with s3_lock.s3_locked(client, S3Location(s3_bucket, "dbcli"), "backup create", utc_now):
        client.meta.events.unregister("needs-retry.s3.PutObject", lose_first_answer)
        assert sent[:2] == [1, 2]
        lock = json.loads(s3_server.client().get_object(Bucket=s3_bucket, Key="dbcli/.lock")["Body"].read())
        assert lock["command"] == "backup create"
    assert s3_server.keys(s3_bucket) == []  # released


def test_a_stale_lock_is_taken_over_by_one_of_two_racing_runs(s3_server: S3Server, s3_bucket: str) -> None:
    """Two runs find the same stale lock (its process on this host is gone) at the same moment: one
    takes it over, the other exits 75 naming the first; never both."""
    import subprocess

    from dbcli.backup.s3_client import S3Location, connect
    from dbcli.config.model import S3Config

    clients = [connect(S3Config(**s3_server.settings())) for _ in range(2)]
    for _round in range(10):  # 10 rounds: the two runs' requests interleave differently each time
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = {"owner": "killed", "pid": dead.pid, "host": socket.gethostname(), "command": "backup create",
                 "started_at": "2026-01-01T00:00:00Z", "expires_at": "2999-01-01T00:00:00Z"}
        s3_server.client().put_object(Bucket=s3_bucket, Key="dbcli/.lock", Body=json.dumps(stale).encode())
        outcomes = _race(clients, S3Location(s3_bucket, "dbcli"))
        assert sorted(outcomes) == ["refused", "took"]
        assert s3_server.keys(s3_bucket) == []


def test_parts_grow_past_the_first_ones(s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts grow as PART_SIZES says (smaller sizes here than the real 8, 32 and 128 MiB): the object is
    still exactly what was written."""
    import hashlib
    import os

    from dbcli.backup import s3_io
    from dbcli.backup.s3_client import connect
    from dbcli.config.model import S3Config

    monkeypatch.setattr(s3_io, "PART_SIZES", ((0, 5 << 20), (2, 6 << 20), (3, 7 << 20)))
    client = connect(S3Config(**s3_server.settings()))
    data = os.urandom(1 << 20) * 24
    sink = s3_io.MultipartSink(client, s3_bucket, "grown")
    for at in range(0, len(data), 777_777):
        sink.write(data[at:at + 777_777])
    sink.commit()
    stored = client.get_object(Bucket=s3_bucket, Key="grown")
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert stored["ETag"].endswith('-5"')  # parts of 5, 5, 6 and 7 MiB, then the last 1 MiB


def test_refused_delete_in_prune_is_one_line_exit_73(cli: Any, s3_profile: str, s3_server: S3Server,
                                                     tmp_path: Path) -> None:
    """Credentials that may list, read and write but not delete: prune says so, with the code of a
    refused write, not a bare error."""
    import json

    assert cli("backup", "create").exit_code == 0
    assert cli("backup", "create").exit_code == 0
    s3_server.add_user("dbcli-nodelete", "nodelete-secret-4c1")
    s3_server.client().put_bucket_policy(Bucket=s3_profile, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": ["dbcli-nodelete"]},
            "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:ListBucketMultipartUploads",
                       "s3:AbortMultipartUpload"],
            "Resource": [f"arn:aws:s3:::{s3_profile}", f"arn:aws:s3:::{s3_profile}/*"]}]}))
    settings = s3_server.settings(access_key_id="dbcli-nodelete", secret_access_key="nodelete-secret-4c1")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql:///x"}, "backup": {
        "dir": f"s3://{s3_profile}/dbcli", "s3": settings}})
    pruned = cli("backup", "prune", "--keep-last", "1")
    assert pruned.exit_code == 73, pruned.stderr
    assert pruned.stderr.startswith(f"Error: s3://{s3_profile}/dbcli/")
    assert "the S3 server refused to delete dbcli/" in pruned.stderr and "(AccessDenied)" in pruned.stderr
    assert pruned.stderr.count("\n") == 1
    assert len(cli("backup", "list", "-f", "json").json()) == 2  # nothing half-removed shows as gone


def test_a_run_that_lost_its_lock_records_no_backup(s3_server: S3Server, s3_bucket: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that stalled past the expiry while another took the lock over: its refresh finds the lock
    not its own, and it writes no manifest (the other run may have cleaned its files as leftovers)."""
    import json

    from dbcli.backup import s3_lock
    from dbcli.backup.repo_s3 import S3Repository
    from dbcli.backup.store import utc_now
    from dbcli.config.model import S3Config
    from dbcli.errors import LockedError

    monkeypatch.setattr(s3_lock, "REFRESH", 0.1)
    repo = S3Repository(f"s3://{s3_bucket}/dbcli", S3Config(**s3_server.settings()))
    other = {"owner": "other", "pid": 1, "host": "db2", "command": "backup create", "started_at": "x"}
    with repo.locked("backup create", utc_now):
        staging = repo.begin("20260101T000000Z-local")
        sink = staging.create("postgres/x.dump")
        sink.write(b"data")
        sink.commit()
        s3_server.client().put_object(Bucket=s3_bucket, Key="dbcli/.lock", Body=json.dumps(other).encode())
        deadline = time.monotonic() + 5
        while not repo.lock_lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockedError, match="lost the repository's lock"):
            staging.commit({"id": "20260101T000000Z-local", "status": "ok"})
        staging.fail({"id": "20260101T000000Z-local", "status": "failed"})  # as backup create then does
    assert not [k for k in s3_server.keys(s3_bucket) if k.startswith("dbcli/20260101T000000Z-local/")]
    assert repo.list_backups() == []
    lock = json.loads(s3_server.client().get_object(Bucket=s3_bucket, Key="dbcli/.lock")["Body"].read())
    assert lock["owner"] == "other"  # the release left the other run's lock alone


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_jobs_round_trip_in_a_bucket(cli: Any, seeded: Any, tmp_path: Path, pg_server: PgServer,
                                     mongo_server: MongoServer, s3_server: S3Server, s3_bucket: str,
                                     empty_target: tuple[str, str], scratch_root: Path, encrypted: bool) -> None:
    """backup create --jobs into object storage: pg_dump -j into a scratch directory, each file uploaded
    (encrypted with a key); verify and restore read them into a scratch directory, removed after."""
    from psycopg.conninfo import conninfo_to_dict

    src_db = conninfo_to_dict(seeded.postgres.dsn)["dbname"]
    backup = _s3_settings(s3_server, s3_bucket, **({"encryption_key": TEST_KEY} if encrypted else {}))
    write_config(tmp_path / "dbcli.yaml", {"backup": backup, "profiles": {
        "src": profile_settings(pg_server, src_db, mongo_server, seeded.mongo.database),
        "dst": profile_settings(pg_server, empty_target[0], mongo_server, empty_target[1])}})
    made = cli("-p", "src", "backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
    assert made.exit_code == 0, made.stderr
    backup_id = made.json()["id"]
    manifest = json.loads(s3_server.client().get_object(Bucket=s3_bucket, Key=f"dbcli/{backup_id}/manifest.json")
                          ["Body"].read())
    archive = f"dbcli/{backup_id}/{manifest['postgres']['file']}/"
    stored = [k for k in s3_server.keys(s3_bucket) if k.startswith(archive)]
    assert archive + "toc.dat" + (".enc" if encrypted else "") in stored and len(stored) > 2
    assert {f"dbcli/{backup_id}/{rel}" for rel in manifest["files"]} == set(stored)
    assert s3_server.uploads(s3_bucket) == [] and scratch_dirs(scratch_root) == []

    checked = cli("-p", "src", "backup", "verify", backup_id, "--restore-test", "-f", "json")
    assert checked.exit_code == 0, checked.stderr
    assert {c["check"] for c in checked.json()} == {"manifest", "checksum", "pg_restore", "restore-test"}
    assert len([c for c in checked.json() if c["check"] == "checksum"]) == len(stored)
    jobs = ["--jobs", "2"]
    restored = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres", *jobs,
                   "-f", "json")
    assert restored.exit_code == 0, restored.stderr
    assert all(r["ok"] for r in restored.json())
    assert logical._pg_counts(pg_server, empty_target[0]) == logical._pg_counts(pg_server, src_db)
    assert scratch_dirs(scratch_root) == []

    # a damaged object: verify and restore name it, before pg_restore reads anything
    victim = max(stored, key=lambda k: s3_server.client().head_object(Bucket=s3_bucket, Key=k)["ContentLength"])
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=victim)["Body"].read()
    s3_server.client().put_object(Bucket=s3_bucket, Key=victim, Body=body[:-100] + bytes(100))
    damaged = cli("-p", "src", "backup", "verify", backup_id)
    assert damaged.exit_code == 8 and "checksum mismatch" in damaged.stderr, damaged.stderr
    assert victim.rsplit("/", 1)[-1] in damaged.stderr
    again = cli("-p", "src", "backup", "restore", backup_id, "--profile", "dst", "--target", "postgres", "--drop",
                *jobs)
    assert again.exit_code == 8 and "damaged" in again.stderr, again.stderr
    assert scratch_dirs(scratch_root) == []


def test_kill_during_a_jobs_upload_lists_nothing_and_the_next_run_cleans(cli: Any, s3_profile: str, tmp_path: Path,
                                                                         s3_server: S3Server,
                                                                         scratch_root: Path) -> None:
    run = Running(["backup", "create", "--target", "postgres", "--jobs", "2"], "upload", tmp_path)
    run.wait_for("dbcli-test: paused at upload")
    run.kill()
    assert any(k.endswith("toc.dat") or k.endswith(".dat.gz") for k in s3_server.keys(s3_profile))  # part-way
    assert len(scratch_dirs(scratch_root)) == 1  # the killed run's dump: it could not remove it
    listed = cli("backup", "list", "-f", "json")
    assert (listed.exit_code, listed.json()) == (0, [])

    again = cli("backup", "create", "--target", "postgres", "--jobs", "2", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["cleaned_leftovers"] >= 1
    assert scratch_dirs(scratch_root) == []
    assert s3_server.uploads(s3_profile) == []
    prefixes = {k.split("/")[1] for k in s3_server.keys(s3_profile) if k.count("/") >= 2}
    assert prefixes == {again.json()["id"]}
    assert [r["status"] for r in cli("backup", "list", "-f", "json").json()] == ["ok"]


def _race(clients: list[Any], location: Any) -> list[str]:
    """Both clients take the lock at the same moment; "took" or "refused" for each. The one that took
    it holds it until the other has decided."""
    import threading

    from dbcli.backup import s3_lock
    from dbcli.backup.store import utc_now
    from dbcli.errors import LockedError

    start, both, outcomes = threading.Barrier(len(clients)), threading.Event(), []

    def decided(outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == len(clients):
            both.set()

    def run(client: Any) -> None:
        start.wait()
        try:
            with s3_lock.s3_locked(client, location, "backup create", utc_now):
                decided("took")
                both.wait(10)
        except LockedError:
            decided("refused")

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes
