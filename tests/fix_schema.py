"""Databases with the project schema applied: a template built once per session, cloned per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fix_pg import PgServer


@pytest.fixture(scope="session")
def schema_template(pg_server: PgServer) -> Iterator[str]:
    """A database holding every migration of schemas/postgres, used as a template."""
    from dbcli.config.load import load_config
    from dbcli.schema.files import migrations

    name = f"tpl_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as conn:
        from psycopg import sql

        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import psycopg

    cfg = load_config()
    with psycopg.connect(pg_server.conninfo(name)) as conn:
        for m in migrations(cfg):
            conn.execute(m.sql.encode())
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def schema_db(pg_server: PgServer, schema_template: str) -> Iterator[str]:
    """A fresh database with the e-commerce schema (no rows), dropped after the test."""
    name = pg_server.create_database(template=schema_template)
    yield name
    pg_server.drop_database(name)
