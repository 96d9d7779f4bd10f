"""The schema directory loads, and client-side validation follows each collection's JSON Schema."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dbcli.config.load import load_config
from dbcli.errors import InvalidInputError
from dbcli.schema.files import collection_specs, migrations
from tests.helpers import invoke, write_config


def test_migrations_are_ordered_and_checksummed() -> None:
    found = migrations(load_config())
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert all(len(m.checksum) == 64 for m in found)


def test_collection_specs_validate_documents() -> None:
    specs = collection_specs(load_config())
    assert {"user_activities", "user_stats", "activity_buckets"} <= set(specs)
    stats = specs["user_stats"]
    stats.validate({"user_id": 1, "activity_count": 3, "last_activity": dt.datetime.now(dt.UTC)})
    with pytest.raises(InvalidInputError, match="violates the user_stats schema"):
        stats.validate({"user_id": 1})


def test_schema_db_has_tables(schema_db: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"users", "orders", "order_items", "products", "order_totals"} <= tables


# ---- a schema.dir laid out wrong (issue 15) -----------------------------------------------------

def test_sql_files_at_the_top_of_schema_dir_are_a_config_error(tmp_path: Path, pg_conninfo: str) -> None:
    # issue 15: SQL files directly in schema.dir gave "nothing to apply: the schema is up to date", exit 0
    target = tmp_path / "db"
    target.mkdir()
    (target / "0001_users.sql").write_text("CREATE TABLE t (x int);\n")
    (target / "0002_more.sql").write_text("CREATE TABLE u (x int);\n")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_conninfo}, "schema": {"dir": str(target)}})
    for args in (["schema", "apply"], ["schema", "apply", "--dry-run"], ["schema", "status"]):
        result = invoke(args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "has SQL files at its top (0001_users.sql, 0002_more.sql)" in result.stderr
        assert f"migrations belong in {target / 'postgres'}" in result.stderr
        assert "expected postgres/0001_name.sql" in result.stderr


def test_schema_dir_without_postgres_or_mongo_is_a_config_error(tmp_path: Path, pg_conninfo: str) -> None:
    target = tmp_path / "db"
    (target / "migrations").mkdir(parents=True)
    (target / "notes.txt").write_text("x")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_conninfo}, "schema": {"dir": str(target)}})
    result = invoke(["schema", "apply"])
    assert result.exit_code == 3, result.stderr
    assert "has neither postgres/ nor mongo/ (found: migrations/, notes.txt)" in result.stderr
    (target / "mongo").mkdir()
    assert invoke(["schema", "apply"]).exit_code == 0
