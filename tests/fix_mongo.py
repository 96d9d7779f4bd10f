"""A MongoDB-wire server for the tests: FerretDB (or $DBCLI_TEST_MONGO_URI), a database per test.

$DBCLI_TEST_MONGO_ENGINE picks the server: ``ferretdb1-sqlite`` (the default: FerretDB 1.24 on
SQLite, $DBCLI_FERRETDB), ``ferretdb1-postgres`` (1.24 on a cluster of the wheel's PostgreSQL) or
``ferretdb2`` (FerretDB 2.7 + DocumentDB on PostgreSQL 15, built by scripts/build-ferretdb2;
$DBCLI_FERRETDB2 names the build). Without a server the Mongo tests skip with the reason; under
CI=true they fail instead.
"""

from __future__ import annotations

import os
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


def _ferretdb2_build() -> str | None:
    from dbcli.mongo import pg_backend

    root = pg_backend.ferretdb2_build()
    return str(root / "ferretdb") if root else None


# resolved at import, before the per-test environment points XDG_CACHE_HOME elsewhere
BUILT_FERRETDB = _build_cache_binary()
BUILT_FERRETDB2 = _ferretdb2_build()


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
    from dbcli.errors import UnreachableError
    from dbcli.mongo.embedded import start_engine, stop_engine

    engine = os.environ.get("DBCLI_TEST_MONGO_ENGINE") or "ferretdb1-sqlite"
    if engine == "ferretdb2":
        binary, kind = BUILT_FERRETDB2, engine
        if binary is None:
            _unavailable("DBCLI_TEST_MONGO_ENGINE=ferretdb2: FerretDB 2.7 not built (scripts/build-ferretdb2)")
    else:
        binary, kind = _ferretdb_binary(), "ferretdb" if engine == "ferretdb1-sqlite" else engine
        if binary is None:
            _unavailable("no FerretDB binary (run scripts/build-ferretdb, or set DBCLI_TEST_MONGO_URI)")
    assert binary is not None
    data_dir = tmp_path_factory.mktemp("ferretdb")
    try:
        proc, port, cluster = start_engine(binary, kind, data_dir)
    except UnreachableError as e:
        _unavailable(f"FerretDB ({engine}) did not start: {e}; {(data_dir / 'server.log').read_text()[-500:]}")
    # binary: a FerretDB 1.24 (SQLite) tests may start another of (tests/mongo/test_frozen_server.py)
    yield MongoServer(f"mongodb://127.0.0.1:{port}/", None if cluster else binary)
    stop_engine(proc, cluster)


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
