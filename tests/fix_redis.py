"""A real redis-server for the cache tests: one per session, plus throwaway ones a test may stop.

Without the binary the Redis tests skip with the reason; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str | None:
    return os.environ.get("DBCLI_REDIS_SERVER") or shutil.which("redis-server")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"redis-server required under CI=true: {reason}")
    pytest.skip(reason)


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        directory.mkdir(parents=True, exist_ok=True)
        self._log = open(directory / "redis.log", "wb")  # noqa: SIM115
        # no persistence: a test server must leave nothing behind but its temp dir
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
            stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    _unavailable(f"redis-server did not start: {(directory / 'redis.log').read_text()[-300:]}")
                time.sleep(0.02)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = _binary()
    if binary is None:
        _unavailable("no redis-server binary (apt-get install redis-server)")
    assert binary is not None
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session server, emptied before the test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start a private redis-server the test may stop; all are stopped at the end."""
    binary = _binary()
    started: list[RedisServer] = []

    def _start() -> RedisServer:
        if binary is None:
            _unavailable("no redis-server binary (apt-get install redis-server)")
        assert binary is not None
        server = RedisServer(binary, tmp_path / f"redis{len(started)}")
        started.append(server)
        return server
    yield _start
    for server in started:
        server.stop()
