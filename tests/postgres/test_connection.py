"""The profile's connection as libpq parameters: the DSN read by libpq itself, the profile on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from dbcli.config.load import load_config
from dbcli.errors import ConfigError
from dbcli.postgres import connection as postgres
from tests.helpers import write_config


@pytest.mark.parametrize("settings", [
    {"dsn": "postgresql://app:s3cret@db.internal:6432/shop?sslmode=require&application_name=x", "dbname": "other"},
    {"dsn": "host=/tmp port=5433 user='a b' options='-c search_path=x'", "password": "p"},
    {"host": "db", "port": 5432, "user": "u", "dbname": "d", "sslmode": "disable"},
    {"dsn": "postgresql://h/db?ssl=true&target_session_attrs=read-write", "connect_timeout": 3},
])
def test_conn_params_are_libpqs_reading_of_the_conninfo(tmp_path: Path, settings: dict[str, Any]) -> None:
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": settings})))
    via_libpq = {k: str(v) for k, v in conninfo_to_dict(postgres.conninfo(cfg)).items() if v is not None}
    assert postgres.conn_params(cfg) == via_libpq
    assert postgres.conn_params(cfg, dbname="z")["dbname"] == "z"


def test_profile_settings_override_the_dsn(tmp_path: Path) -> None:
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": {
        "dsn": "postgresql://app:s3cret@db.internal:6432/shop?sslmode=require", "dbname": "other", "port": 7}})))
    params = postgres.conn_params(cfg)
    assert params["host"] == "db.internal" and params["user"] == "app" and params["password"] == "s3cret"
    assert params["dbname"] == "other" and params["port"] == "7" and params["sslmode"] == "require"
    assert params["application_name"] == cfg.postgres.application_name


def test_conn_params_of_a_dsn_only_libpq_reads(tmp_path: Path) -> None:
    # whitespace in a URI: libpq trims it
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql://h/db "}})))
    assert postgres.conn_params(cfg)["dbname"] == "db"


def test_malformed_dsn_gets_libpqs_message(tmp_path: Path) -> None:
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "host='unterminated"}})))
    with pytest.raises(ConfigError, match=r"^postgres\.dsn is not a valid connection string: .*unterminated"):
        postgres.conn_params(cfg)
    with pytest.raises(ConfigError, match=r"^postgres\.dsn is not a valid connection string: .*unterminated"):
        postgres.conninfo(cfg)
