"""A real S3 server for the tests: Versity S3 Gateway over a temporary directory, once per session.

The binary comes from $DBCLI_VERSITYGW, else scripts/build-versitygw (cached in ~/.cache/dbcli).
Without one the S3 tests skip with the reason; under CI=true they fail instead. Each test that asks
for ``s3_bucket`` gets a bucket of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY = "dbcli-test-access"
SECRET_KEY = "dbcli-test-secret-5f1e9c"  # the tests check it never shows in output


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"S3 server required under CI=true: {reason}")
    pytest.skip(reason)


def _binary() -> str | None:
    given = os.environ.get("DBCLI_VERSITYGW")
    if given:
        return given if os.access(given, os.X_OK) else None
    try:
        built = subprocess.run([str(ROOT / "scripts" / "build-versitygw")], capture_output=True, text=True,
                               timeout=900, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    path = built.stdout.strip().splitlines()[-1] if built.stdout.strip() else ""
    return path if path and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes] | None
    binary: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        """``backup.s3`` settings for this server."""
        return {"endpoint_url": self.endpoint, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                "addressing_style": "path", "timeout": 5, **extra}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def uploads(self, bucket: str) -> list[str]:
        return [u["Key"] for u in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def add_user(self, access: str, secret: str) -> None:
        """A user of role ``user``: no rights on the root's buckets but those a bucket policy grants."""
        subprocess.run([self.binary, "admin", "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--endpoint-url",
                        self.endpoint, "create-user", "--access", access, "--secret", secret, "--role", "user"],
                       check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    binary = _binary()
    if binary is None:
        _unavailable("no versitygw binary (run scripts/build-versitygw, or set DBCLI_VERSITYGW)")
    assert binary is not None
    base = tmp_path_factory.mktemp("versitygw")
    (base / "data").mkdir()
    (base / "meta").mkdir()
    (base / "iam").mkdir()
    port = free_port()
    env = {**os.environ, "ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY}
    with open(base / "server.log", "wb") as log:
        # --sidecar: object metadata in files, so the data directory needs no xattr support;
        # relaxed bucket names: the docs' examples use s3://bk/...
        # --iam-dir: users other than the root one, for refused reads and writes
        proc = subprocess.Popen([binary, "--port", f"127.0.0.1:{port}", "--quiet", "--disable-strict-bucket-names",
                                 "--iam-dir", str(base / "iam"), "posix", "--sidecar", str(base / "meta"),
                                 str(base / "data")],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _unavailable(f"versitygw did not start: {(base / 'server.log').read_text()[-500:]}")
            time.sleep(0.1)
    yield S3Server(f"http://127.0.0.1:{port}", proc, binary)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket on the session's server."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
