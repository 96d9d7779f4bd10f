"""A MongoDB-wire server for the tests: FerretDB (or $DBCLI_TEST_MONGO_URI), a database per test.

Without a server the Mongo tests skip with the reason; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build_cache_binary() -> str:
    from dbcli.config.paths import cache_home
    from dbcli.mongo.embedded import FERRETDB_VERSION

    return str(cache_home() / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb")


# resolved at import, before the per-test environment points XDG_CACHE_HOME elsewhere
BUILT_FERRETDB = _build_cache_binary()


def _ferretdb_binary() -> str | None:
    for candidate in (os.environ.get("DBCLI_FERRETDB"), BUILT_FERRETDB):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"MongoDB-wire server required under CI=true: {reason}")
    pytest.skip(reason)


class MongoServer:
    def __init__(self, uri: str, binary: str | None = None) -> None:
        self.uri = uri
        self.binary = binary

    def client(self) -> Any:
        from pymongo import MongoClient

        return MongoClient(self.uri, serverSelectionTimeoutMS=5000, tz_aware=True)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    uri = os.environ.get("DBCLI_TEST_MONGO_URI")
    if uri:
        yield MongoServer(uri)
        return
    binary = _ferretdb_binary()
    if binary is None:
        _unavailable("no FerretDB binary (run scripts/build-ferretdb, or set DBCLI_TEST_MONGO_URI)")
    assert binary is not None
    from dbcli.errors import UnreachableError
    from dbcli.mongo.embedded import start_server

    data_dir = tmp_path_factory.mktemp("ferretdb")
    try:
        proc, port = start_server(binary, "ferretdb", data_dir)
    except UnreachableError:
        _unavailable(f"FerretDB did not start: {(data_dir / 'server.log').read_text()[-500:]}")
    yield MongoServer(f"mongodb://127.0.0.1:{port}/", binary)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def mongo_db(mongo_server: MongoServer) -> Iterator[str]:
    """Name of a fresh database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    client = mongo_server.client()
    try:
        client.drop_database(name)
    finally:
        client.close()
