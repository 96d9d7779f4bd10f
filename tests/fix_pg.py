"""PostgreSQL for the tests: the embedded server (or $DBCLI_TEST_PG_DSN), a fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class PgServer:
    def __init__(self, params: dict[str, Any], data_dir: Path | None) -> None:
        self.params = params  # libpq keywords for the maintenance database
        self.data_dir = data_dir

    def conninfo(self, dbname: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **{**self.params, "dbname": dbname})

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(self.params.get("dbname", "postgres")), autocommit=True)

    def create_database(self, template: str = "template0") -> str:
        from psycopg import sql

        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                       sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    dsn = os.environ.get("DBCLI_TEST_PG_DSN")
    if dsn:
        from psycopg.conninfo import conninfo_to_dict

        yield PgServer(conninfo_to_dict(dsn), None)
        return
    from dbcli.postgres import embedded as local_pg

    data_dir = tmp_path_factory.mktemp("pg") / "data"
    server = local_pg.ensure_running(data_dir, "postgres")
    yield PgServer(server.conninfo("postgres"), data_dir)
    local_pg.stop(data_dir)


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[str]:
    """Name of a fresh, empty database, dropped after the test."""
    name = pg_server.create_database()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_conninfo(pg_server: PgServer, pg_db: str) -> str:
    return pg_server.conninfo(pg_db)
