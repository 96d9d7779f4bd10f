"""Backup fixtures: a seeded e-commerce database with activity collections, and backups of it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fix_mongo import MongoServer
from tests.fix_pg import PgServer
from tests.helpers import write_config

SEED_SIZES = {"users": 12, "products": 6, "orders": 25, "events": 40}
TEST_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # base64 of bytes 0..31, tests only


def seed_small(cfg: Any) -> dict[str, int]:
    from dbcli.shop.seed.load import seed

    return seed(cfg, **SEED_SIZES)


def profile_settings(pg: PgServer, pg_db: str, mongo: MongoServer, mongo_db: str) -> dict[str, Any]:
    return {"postgres": {"dsn": pg.conninfo(pg_db)},
            "mongo": {"uri": mongo.uri, "database": mongo_db, "connect_timeout": 5}}


@pytest.fixture
def seeded(schema_full_config_file: Path, load_cfg: Any) -> Any:
    """The Config of ./dbcli.yaml, its schema seeded with a little data in both databases."""
    cfg = load_cfg()
    seed_small(cfg)
    return cfg


@dataclass
class MadeBackup:
    """A backup made once per module; tests work on copies of its directory."""

    root: Path
    id: str
    settings: dict[str, Any]
    pg_db: str
    mongo_db: str

    def copy_to(self, tmp_path: Path) -> Path:
        target = tmp_path / "backups"
        shutil.copytree(self.root, target)
        write_config(tmp_path / "dbcli.yaml", self.settings)
        return target


def _made_backup(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, schema_template: str,
                 mongo_server: MongoServer, key: str | None) -> Iterator[MadeBackup]:
    from dbcli.backup.create import create
    from dbcli.config.load import load_config

    base = tmp_path_factory.mktemp("made_backup")
    pg_db = pg_server.create_database(template=schema_template)
    mongo_db = f"t_{uuid.uuid4().hex[:12]}"
    settings = profile_settings(pg_server, pg_db, mongo_server, mongo_db)
    if key:
        settings["backup"] = {"encryption_key": key}
    cfg = load_config(str(write_config(base / "dbcli.yaml", settings)))
    seed_small(cfg)
    made = create(cfg, root=base / "backups")
    yield MadeBackup(root=base / "backups", id=made["id"], settings=settings, pg_db=pg_db, mongo_db=mongo_db)
    pg_server.drop_database(pg_db)
    client = mongo_server.client()
    client.drop_database(mongo_db)
    client.close()


@pytest.fixture(scope="module")
def made_backup(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, schema_template: str,
                mongo_server: MongoServer) -> Iterator[MadeBackup]:
    yield from _made_backup(tmp_path_factory, pg_server, schema_template, mongo_server, None)


@pytest.fixture(scope="module")
def made_encrypted_backup(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, schema_template: str,
                          mongo_server: MongoServer) -> Iterator[MadeBackup]:
    yield from _made_backup(tmp_path_factory, pg_server, schema_template, mongo_server, TEST_KEY)


# PostgreSQL 15 (Debian's postgresql-15), for backups made with the wheel's newer tools
PG15_BIN = Path(os.environ.get("DBCLI_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture(scope="session")
def pg15_server(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """A PostgreSQL 15 server: the session's own when it is one (the test bed on 15), else a cluster
    of Debian's postgresql-15 started by the test bed's tests/pg_cluster.py; skipped without one."""
    if pg_server.major == 15:
        yield pg_server
        return
    if not (PG15_BIN / "postgres").is_file():
        pytest.skip(f"no PostgreSQL 15 in {PG15_BIN} (the postgresql-15 package; or set DBCLI_TEST_PG15_BIN)")
    from tests import pg_cluster

    cluster = pg_cluster.start(tmp_path_factory.mktemp("pg15"), PG15_BIN)
    try:
        yield PgServer(dict(cluster.conninfo()), cluster.data_dir)
    finally:
        pg_cluster.stop(cluster)
