"""schema apply / status against real servers: migrations, bookkeeping, locking, checksums, failures, Mongo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbcli.schema.files import default_dir
from dbcli.schema.migrations import LOCK_KEY
from dbcli.schema.statements import error_line, split_statements
from tests.helpers import invoke, write_config

VERSIONS = ["0001", "0002", "0003", "0004", "0005"]
TABLES = {"users", "user_profiles", "addresses", "categories", "products", "product_categories", "orders",
          "order_items", "payments", "dbcli_schema_migrations"}
TUTORIAL_QUERY = ("SELECT o.order_id, o.order_date, p.product_name, oi.quantity FROM orders o JOIN order_items oi "
                  "ON o.order_id = oi.order_id JOIN products p ON oi.product_id = p.product_id WHERE o.user_id = %s")


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def recorded(dsn: str) -> list[tuple[str, int]]:
    return query(dsn, "SELECT version, count(*) FROM dbcli_schema_migrations GROUP BY version ORDER BY version")


def exists(dsn: str, relation: str) -> bool:
    return bool(query(dsn, "SELECT to_regclass(%s) IS NOT NULL", (relation,))[0][0])


@pytest.fixture
def own_schema(tmp_path: Path, pg_conninfo: str) -> Path:
    """A copy of schemas/ that the test may edit, and ./dbcli.yaml pointing at it (no Mongo)."""
    target = tmp_path / "myschema"
    shutil.copytree(default_dir() / "postgres", target / "postgres")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_conninfo}, "schema": {"dir": str(target)}})
    return target / "postgres"


# ---- apply -------------------------------------------------------------------------------------

def test_apply_fresh_database_then_second_run_is_noop(config_file: Path, pg_conninfo: str) -> None:
    first = invoke(["schema", "apply", "-f", "json"])
    assert first.exit_code == 0, first.stderr
    assert [(r["item"], r["action"]) for r in first.json()] == [
        ("0001_users", "applied migration"), ("0002_catalog", "applied migration"),
        ("0003_orders", "applied migration"), ("0004_views", "applied migration"),
        ("0005_citus", "applied migration")]
    assert "applied 0001_users.sql (" in first.stderr
    assert first.stderr.strip().endswith("applied 5 migration(s) and 0 MongoDB change(s)")
    assert recorded(pg_conninfo) == [(v, 1) for v in VERSIONS]
    row = query(pg_conninfo, "SELECT name, length(checksum), duration_ms >= 0, applied_by, dbcli_version "
                             "FROM dbcli_schema_migrations WHERE version = '0001'")[0]
    assert row[:3] == ("users", 64, True)

    second = invoke(["schema", "apply", "-f", "json"])
    assert second.exit_code == 0
    assert second.json() == []
    assert second.stderr == "nothing to apply: the schema is up to date\n"
    assert recorded(pg_conninfo) == [(v, 1) for v in VERSIONS]


def test_apply_creates_tables_fks_indexes_views(config_file: Path, pg_conninfo: str) -> None:
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    tables = {r[0] for r in query(pg_conninfo, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == TABLES
    fks = {r[0] for r in query(pg_conninfo, "SELECT conname FROM pg_constraint WHERE contype = 'f'")}
    assert fks == {"user_profiles_user_id_fkey", "addresses_user_id_fkey", "categories_parent_id_fkey",
                   "product_categories_product_id_fkey", "product_categories_category_id_fkey",
                   "orders_user_id_fkey", "orders_shipping_address_fkey", "order_items_order_id_fkey",
                   "order_items_product_id_fkey", "payments_order_id_fkey"}
    indexes = {r[0] for r in query(pg_conninfo, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"users_email_lower_key", "addresses_user_id_idx", "product_categories_category_id_idx",
            "orders_user_id_order_date_idx", "order_items_product_id_idx", "payments_order_id_idx"} <= indexes
    views = {r[0] for r in query(pg_conninfo, "SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"order_totals", "customer_order_summary"} <= views
    assert query(pg_conninfo, TUTORIAL_QUERY, (1,)) == []


def test_apply_quiet_prints_nothing(config_file: Path) -> None:
    result = invoke(["schema", "apply", "--quiet"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_dry_run_prints_sql_and_changes_nothing(config_file: Path, pg_conninfo: str) -> None:
    result = invoke(["schema", "apply", "--dry-run", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert [r["item"] for r in rows] == ["0001_users", "0002_catalog", "0003_orders", "0004_views", "0005_citus"]
    assert "CREATE TABLE users" in rows[0]["sql"]
    assert "nothing was changed" in result.stderr
    assert not exists(pg_conninfo, "dbcli_schema_migrations")
    assert not exists(pg_conninfo, "users")

    script = invoke(["schema", "apply", "--dry-run", "-f", "table"])
    assert script.stdout.startswith("-- 0001_users.sql\n-- 0001_users: customers")
    assert "CREATE VIEW order_totals AS" in script.stdout


def test_dry_run_after_apply_says_up_to_date(config_file: Path) -> None:
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    result = invoke(["schema", "apply", "--dry-run", "-f", "json"])
    assert (result.exit_code, result.json()) == (0, [])
    assert result.stderr == "dry run: nothing to apply, the schema is up to date\n"


def test_two_concurrent_applies_record_each_migration_once(config_file: Path, pg_conninfo: str) -> None:
    # Hold the lock ourselves until both processes wait on it, so they really start together.
    holder = psycopg.connect(pg_conninfo, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        procs = [subprocess.Popen([sys.executable, "-m", "dbcli", "schema", "apply", "-f", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
                 for _ in range(2)]
        deadline = time.monotonic() + 30
        while holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                             "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                             ).fetchone()[0] < 2:  # type: ignore[index]
            assert time.monotonic() < deadline, [p.poll() for p in procs]
            time.sleep(0.05)
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        holder.close()
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    assert all("another schema apply is running: waiting for it to finish" in err for _, err in outputs)
    applied = [r["item"] for out, _ in outputs for r in json.loads(out)]
    assert sorted(applied) == ["0001_users", "0002_catalog", "0003_orders", "0004_views", "0005_citus"]
    assert recorded(pg_conninfo) == [(v, 1) for v in VERSIONS]


def test_changed_applied_file_stops_before_anything_runs(own_schema: Path, pg_conninfo: str) -> None:
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    catalog = own_schema / "0002_catalog.sql"
    catalog.write_text(catalog.read_text() + "\nCREATE INDEX products_stock_idx ON products (stock);\n")
    (own_schema / "0006_more.sql").write_text("CREATE TABLE more (id int);\n")

    result = invoke(["schema", "apply"])
    assert result.exit_code == 7
    assert result.stderr == ("Error: migration myschema/postgres/0002_catalog.sql changed after it was applied; "
                             "nothing was applied (hint: restore the applied file and put the change in a new "
                             "migration)\n")
    assert not exists(pg_conninfo, "more")
    assert not exists(pg_conninfo, "products_stock_idx")
    assert recorded(pg_conninfo) == [(v, 1) for v in VERSIONS]

    status = invoke(["schema", "status", "-f", "json"])
    states = {r["version"]: r["state"] for r in status.json()}
    assert states == {"0001": "applied", "0002": "changed", "0003": "applied", "0004": "applied", "0005": "applied",
                      "0006": "pending"}
    assert invoke(["schema", "apply", "--dry-run"]).exit_code == 7


def test_crlf_line_endings_do_not_count_as_a_change(own_schema: Path) -> None:
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    users = own_schema / "0001_users.sql"
    users.write_bytes(users.read_bytes().replace(b"\n", b"\r\n"))
    result = invoke(["schema", "status", "--exit-code", "-f", "json"])
    assert result.exit_code == 0, result.stdout


def test_syntax_error_rolls_back_the_migration_exit_5_with_line(own_schema: Path, pg_conninfo: str) -> None:
    (own_schema / "0006_bad.sql").write_text("-- a comment\nCREATE TABLE half (id int);\n\nCREAT TABLE oops (x int);\n")
    result = invoke(["schema", "apply", "-f", "json"])
    assert result.exit_code == 5
    assert result.stderr.splitlines()[-1] == (
        'Error: migration myschema/postgres/0006_bad.sql:4 failed: syntax error at or near "CREAT" '
        "(hint: it was rolled back completely; applied before it: 0001_users, 0002_catalog, 0003_orders, "
        "0004_views, 0005_citus)")
    assert not exists(pg_conninfo, "half")
    assert [v for v, _ in recorded(pg_conninfo)] == VERSIONS
    assert invoke(["schema", "status", "--exit-code", "-q"]).exit_code == 8


def test_constraint_violation_rolls_back_exit_7_with_line(own_schema: Path, pg_conninfo: str) -> None:
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    (own_schema / "0006_data.sql").write_text(
        "CREATE TABLE levels (n int CONSTRAINT levels_n_check CHECK (n > 0));\n"
        "INSERT INTO levels VALUES (1);\n"
        "-- 'quoted; text' and $x$ dollar; quoted $x$ must not confuse the split\n"
        "INSERT INTO levels VALUES (length('a;b'));\n"
        "INSERT INTO levels\n  VALUES (0);\n")
    result = invoke(["schema", "apply"])
    assert result.exit_code == 7
    assert result.stderr.startswith('Error: migration myschema/postgres/0006_data.sql:5 failed: new row for relation '
                                    '"levels" violates check constraint "levels_n_check" (hint: it was rolled back '
                                    "completely)")
    assert not exists(pg_conninfo, "levels")
    assert [v for v, _ in recorded(pg_conninfo)] == VERSIONS


def test_error_without_cursor_position_is_located(own_schema: Path, pg_conninfo: str) -> None:
    (own_schema / "0006_ref.sql").write_text("CREATE TABLE a (id int PRIMARY KEY);\n\n"
                                             "CREATE TABLE b (\n  id int REFERENCES nosuch (id)\n);\n")
    result = invoke(["schema", "apply", "--target", "postgres"])
    assert result.exit_code == 5
    assert 'Error: migration myschema/postgres/0006_ref.sql:3 failed: relation "nosuch" does not exist' \
        in result.stderr
    assert not exists(pg_conninfo, "a")


def test_split_statements_and_error_line() -> None:
    text = ("SELECT 1; -- c;\n/* x; /* nested; */ */ SELECT 'a;''b';\nSELECT E'\\';';\n"
            "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql;\nSELECT \"a;b\"")
    parts = [text[s:e] for s, e in split_statements(text)]
    assert parts == ["SELECT 1;", "SELECT 'a;''b';", "SELECT E'\\';';",
                     "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql;", 'SELECT "a;b"']

    class Diag:
        statement_position = "12"

    class Err(Exception):
        diag = Diag()

    assert error_line("SELECT 1;\nSELEC 2;", Err()) == 2


def test_unknown_target_is_usage_error(config_file: Path) -> None:
    result = invoke(["schema", "apply", "--target", "oracle"])
    assert result.exit_code == 2


def test_target_mongo_without_mongo_exits_3(config_file: Path) -> None:
    for args in (["schema", "apply", "--target", "mongo"], ["schema", "status", "--target", "mongo"]):
        result = invoke(args)
        assert result.exit_code == 3
        assert result.stderr == "Error: no MongoDB is configured (hint: set mongo.uri, or mongo.embedded: true)\n"


# ---- status ------------------------------------------------------------------------------------

def test_status_exit_code_8_while_pending_and_0_after_apply(config_file: Path) -> None:
    before = invoke(["schema", "status", "--exit-code", "-f", "json"])
    assert before.exit_code == 8
    assert before.stderr == "Error: schema is not up to date: 5 pending\n"
    assert [(r["version"], r["name"], r["state"]) for r in before.json()] == [
        ("0001", "users", "pending"), ("0002", "catalog", "pending"), ("0003", "orders", "pending"),
        ("0004", "views", "pending"), ("0005", "citus", "pending")]
    assert invoke(["schema", "status", "-q"]).exit_code == 0  # without --exit-code it only reports

    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    after = invoke(["schema", "status", "--exit-code", "-f", "json"])
    assert after.exit_code == 0
    assert {r["state"] for r in after.json()} == {"applied"}
    assert all(r["applied_at"] for r in after.json())


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "table"])
def test_status_formats(config_file: Path, fmt: str) -> None:
    result = invoke(["schema", "status", "-f", fmt])
    assert result.exit_code == 0
    if fmt == "csv":
        assert result.stdout.splitlines()[:2] == ["kind,version,name,collection,state,applied_at",
                                                  "migration,0001,users,,pending,"]
    elif fmt == "jsonl":
        assert json.loads(result.stdout.splitlines()[0])["state"] == "pending"
    else:
        assert "0004" in result.stdout and "pending" in result.stdout


# ---- MongoDB (FerretDB) ------------------------------------------------------------------------

def test_apply_creates_collections_and_declared_indexes(full_config_file: Path, mongo_server: Any,
                                                        mongo_db: str) -> None:
    result = invoke(["schema", "apply", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    mongo_rows = [r for r in result.json() if r["target"] == "mongo"]
    assert {r["item"] for r in mongo_rows if r["action"] == "create collection"} == {
        "user_activities", "user_stats", "activity_buckets", "activity_journal"}
    notes = [line for line in result.stderr.splitlines() if "validators" in line]
    if mongo_server.binary:  # FerretDB: says so once
        assert notes == ["note: this MongoDB-wire server does not support collection validators (FerretDB); "
                         "dbcli validates every document it writes against the same JSON Schema client-side"]
    client = mongo_server.client()
    try:
        db = client[mongo_db]
        for name, expected in (("user_activities", {"event_id_unique", "user_id_timestamp", "type_day",
                                                    "day_user_id"}),
                               ("user_stats", {"user_id_unique", "activity_count_desc"}),
                               ("activity_buckets", {"user_id_hour", "hour"})):
            listed = {ix["name"]: ix for ix in db[name].list_indexes()}
            assert expected <= set(listed)
        # a bucket's key is unique through its _id (dbcli.shop.activity.model.bucket_id), not an index
        assert not listed["user_id_hour"].get("unique")
        assert dict(listed["user_id_hour"]["key"]) == {"user_id": 1, "hour": 1}
    finally:
        client.close()

    status = invoke(["schema", "status", "--exit-code", "-f", "json"])
    assert status.exit_code == 0, status.stdout
    assert {(r["kind"], r["state"]) for r in status.json()} == {("migration", "applied"), ("collection", "present"),
                                                                ("index", "present")}
    again = invoke(["schema", "apply", "-f", "json"])
    assert (again.exit_code, again.json()) == (0, [])
    assert again.stderr.endswith("nothing to apply: the schema is up to date\n")
    dry = invoke(["schema", "apply", "--dry-run", "-f", "json"])
    assert (dry.exit_code, dry.json()) == (0, [])
    assert dry.stderr.endswith("dry run: nothing to apply, the schema is up to date\n")


def test_mongo_dry_run_and_missing_index(full_config_file: Path, mongo_server: Any, mongo_db: str) -> None:
    dry = invoke(["schema", "apply", "--dry-run", "--target", "mongo", "-f", "json"])
    assert dry.exit_code == 0
    commands = [r["command"] for r in dry.json()]
    assert {"createIndexes": "user_stats", "indexes": [{"key": {"user_id": 1}, "name": "user_id_unique",
                                                         "unique": True}]} in commands
    client = mongo_server.client()
    try:
        assert client[mongo_db].list_collection_names() == []
        assert invoke(["schema", "apply", "--target", "mongo", "-q"]).exit_code == 0
        client[mongo_db]["user_stats"].drop_index("activity_count_desc")
    finally:
        client.close()
    status = invoke(["schema", "status", "--target", "mongo", "--exit-code", "-f", "json"])
    assert status.exit_code == 8
    assert status.stderr == "Error: schema is not up to date: 1 missing\n"
    missing = [r for r in status.json() if r["state"] == "missing"]
    assert missing == [{"kind": "index", "version": None, "name": "activity_count_desc", "collection": "user_stats",
                        "state": "missing", "applied_at": None}]


def test_document_violating_json_schema_is_refused_with_exit_5(full_config_file: Path, mongo_server: Any,
                                                               mongo_db: str) -> None:
    from dbcli.config.load import load_config
    from dbcli.errors import InvalidInputError
    from dbcli.schema.files import validator_for

    assert invoke(["schema", "apply", "--target", "mongo", "-q"]).exit_code == 0
    spec = validator_for(load_config(), "user_stats")
    assert spec is not None
    bad = {"user_id": 0, "activity_count": 1}
    with pytest.raises(InvalidInputError) as info:
        spec.validate(bad)
    assert info.value.exit_code == 5
    assert str(info.value) == "document violates the user_stats schema: user_id: 0 is less than the minimum of 1"
    if mongo_server.binary:  # FerretDB itself would store it: the client-side check is what refuses it
        client = mongo_server.client()
        try:
            client[mongo_db]["user_stats"].insert_one(dict(bad))
            assert client[mongo_db]["user_stats"].count_documents({}) == 1
        finally:
            client.close()


def test_four_concurrent_applies_with_mongo_on_a_fresh_database(full_config_file: Path, pg_conninfo: str,
                                                                mongo_server: Any, mongo_db: str) -> None:
    # issue 15: two applies at once, the second exited 1 with "Collection ... already exists
    # (NamespaceExists)". Every step must count "already done by the other" as done.
    for _round in range(2):
        with mongo_server.client() as client:
            client.drop_database(mongo_db)
        with psycopg.connect(pg_conninfo, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        procs = [subprocess.Popen([sys.executable, "-m", "dbcli", "schema", "apply", "-f", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                                  cwd=full_config_file.parent)
                 for _ in range(4)]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
        rows = [r for out, _ in outputs for r in json.loads(out)]
        assert sorted(r["item"] for r in rows if r["target"] == "postgres") == [
            "0001_users", "0002_catalog", "0003_orders", "0004_views", "0005_citus"]
        assert recorded(pg_conninfo) == [(v, 1) for v in VERSIONS]
        status = invoke(["schema", "status", "--exit-code", "-f", "json"])
        assert status.exit_code == 0, status.stdout
