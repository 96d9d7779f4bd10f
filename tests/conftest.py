"""Shared fixtures: an isolated environment per test, a config file for the test databases, the CLI."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, invoke, write_config

pytest_plugins = [
    "tests.fix_pg",
    "tests.fix_mongo",
    "tests.fix_schema",
    "tests.fix_redis",
    "tests.fix_backup",
    "tests.fix_s3",
    "tests.fix_collection",
    "tests.fix_tables",
    "tests.fix_activity",
    "tests.fix_pitr",
    "tests.fix_smtp",
    "tests.fix_citus",
    "pytester",
]

# the servers a run is pointed at reach every test; any other DBCLI_* variable is the caller's
TEST_SERVER_VARS = ("DBCLI_TEST_PG_DSN", "DBCLI_TEST_PG_BIN", "DBCLI_TEST_MONGO_URI", "DBCLI_TEST_MONGO_ENGINE",
                    "DBCLI_FERRETDB", "DBCLI_REDIS_SERVER", "DBCLI_VERSITYGW")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pg(spec): needs a PostgreSQL server of this version, e.g. pg('>= 17') or "
                   "pg('>= 15, < 18'); skips with the reason on any other (tests/fix_pg.py)")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user config, data or cache leaks into a test, and none leaks out."""
    for var in list(os.environ):
        if var.startswith("DBCLI_") and var not in TEST_SERVER_VARS:
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pg_config(tmp_path: Path, pg_conninfo: str) -> dict[str, Any]:
    """Profile settings for the test's PostgreSQL database (no Mongo)."""
    return {"postgres": {"dsn": pg_conninfo, "connect_timeout": 5}}


@pytest.fixture
def full_config(pg_config: dict[str, Any], mongo_server: Any, mongo_db: str) -> dict[str, Any]:
    return {**pg_config, "mongo": {"uri": mongo_server.uri, "database": mongo_db, "connect_timeout": 5}}


@pytest.fixture
def config_file(tmp_path: Path, pg_config: dict[str, Any]) -> Path:
    return write_config(tmp_path / "dbcli.yaml", pg_config)


@pytest.fixture
def full_config_file(tmp_path: Path, full_config: dict[str, Any]) -> Path:
    return write_config(tmp_path / "dbcli.yaml", full_config)


@pytest.fixture
def schema_config_file(tmp_path: Path, pg_server: Any, schema_db: str) -> Path:
    """./dbcli.yaml pointing at a database with the e-commerce schema applied (no Mongo)."""
    return write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(schema_db)}})


@pytest.fixture
def schema_full_config_file(tmp_path: Path, pg_server: Any, schema_db: str, mongo_server: Any,
                            mongo_db: str) -> Path:
    """./dbcli.yaml: the e-commerce schema in PostgreSQL and a fresh MongoDB database."""
    return write_config(tmp_path / "dbcli.yaml", {
        "postgres": {"dsn": pg_server.conninfo(schema_db)},
        "mongo": {"uri": mongo_server.uri, "database": mongo_db, "connect_timeout": 5},
    })


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli("ping", "-f", "json")``: in-process, with ./dbcli.yaml (if the test wrote one) picked up."""
    def _run(*args: str, input: str | None = None) -> Result:
        return invoke(list(args), input=input)
    return _run


@pytest.fixture
def load_cfg(tmp_path: Path) -> Callable[..., Any]:
    """The library Config for ./dbcli.yaml."""
    def _load(profile: str | None = None) -> Any:
        from dbcli.config.load import load_config

        return load_config(str(tmp_path / "dbcli.yaml"), profile)
    return _load


@pytest.fixture
def stdout_capture() -> Iterator[io.StringIO]:
    yield io.StringIO()
