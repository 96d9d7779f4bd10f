"""schema diff against real servers: drift of every kind, every format, the scratch database's life."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from dbcli.schema.files import default_dir
from dbcli.schema.scratch import PREFIX
from tests.helpers import invoke, write_config


def execute(dsn: str, *statements: str | sql.Composable) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement if isinstance(statement, sql.Composable) else statement.encode())


def scratch_databases(pg_server: Any) -> list[str]:
    with pg_server.admin() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                           (PREFIX + "%",)).fetchall()]


def diff_rows(*extra: str) -> tuple[int, list[dict[str, Any]], str]:
    done = invoke(["schema", "diff", "-f", "json", *extra])
    return done.exit_code, json.loads(done.stdout) if done.stdout.strip() else [], done.stderr


@pytest.fixture
def live(pg_server: Any, schema_db: str, schema_config_file: Path) -> str:
    """The conninfo of a database holding the shop's migrations; ./dbcli.yaml points at it."""
    return str(pg_server.conninfo(schema_db))


# ---- PostgreSQL --------------------------------------------------------------------------------

def test_no_drift_gives_no_rows_and_exit_0(live: str, pg_server: Any) -> None:
    code, rows, err = diff_rows("--exit-code")
    assert (code, rows) == (0, []), err
    assert "no drift" in err
    assert scratch_databases(pg_server) == []


def test_a_column_added_by_hand_is_drift(live: str, pg_server: Any) -> None:
    done = invoke(["sql", "--write", "alter table users add column x int"])
    assert done.exit_code == 0, done.stderr
    code, rows, err = diff_rows("--exit-code")
    assert code == 8
    assert rows == [{"object": "users.x", "kind": "column", "expected": None, "actual": "integer"}]
    assert "users.x" in err and err.startswith("Error: schema drift")
    # without --exit-code the same rows, and exit 0
    code, rows_again, _ = diff_rows()
    assert (code, rows_again) == (0, rows)
    assert scratch_databases(pg_server) == []


def test_every_kind_of_drift(live: str) -> None:
    execute(live,
            "ALTER TABLE products ALTER COLUMN description TYPE varchar(200)",
            "ALTER TABLE products ALTER COLUMN stock DROP DEFAULT",
            "ALTER TABLE user_profiles ALTER COLUMN phone SET NOT NULL",
            "ALTER TABLE products DROP CONSTRAINT products_price_check",
            "ALTER TABLE products ADD CONSTRAINT products_price_check CHECK (price > 0)",
            "DROP INDEX users_created_at_idx",
            "CREATE INDEX products_active_idx ON products (active)",
            "CREATE TABLE scratchpad (id int PRIMARY KEY, note text)",
            "CREATE SEQUENCE ticket_seq START 100",
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'begin return new; end'",
            "CREATE TRIGGER products_touch BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION touch()")
    code, rows, err = diff_rows("--exit-code")
    assert code == 8, err
    got = {(r["object"], r["kind"]): (r["expected"], r["actual"]) for r in rows}
    assert got[("products.description", "column type")] == ("text", "character varying(200)")
    assert got[("products.stock", "column default")] == ("0", None)
    assert got[("user_profiles.phone", "column nullability")] == ("null", "not null")
    assert got[("products.products_price_check", "constraint")] == ("CHECK (price >= 0::numeric)",
                                                                    "CHECK (price > 0::numeric)")
    assert got[("users.users_created_at_idx", "index")][1] is None
    assert "users_created_at_idx" in got[("users.users_created_at_idx", "index")][0]
    assert got[("products.products_active_idx", "index")][0] is None
    assert got[("scratchpad", "table")] == (None, "table")
    assert got[("ticket_seq", "sequence")][0] is None and "start 100" in got[("ticket_seq", "sequence")][1]
    assert got[("touch()", "function")][0] is None
    assert got[("products.products_touch", "trigger")][0] is None
    # a table that is unexpected as a whole is one row, not one per column and constraint
    assert [k for k in got if k[0].startswith("scratchpad")] == [("scratchpad", "table")]


def test_views_and_missing_tables(live: str) -> None:
    execute(live, "DROP VIEW product_sales CASCADE", "CREATE VIEW product_sales AS SELECT 1 AS one",
            "DROP TABLE payments CASCADE")
    _, rows, _ = diff_rows()
    got = {(r["object"], r["kind"]): (r["expected"], r["actual"]) for r in rows}
    expected_view, live_view = got[("product_sales", "view")]
    assert live_view == "SELECT 1 AS one;" and "product" in expected_view
    assert got[("payments", "table")] == ("table", None)
    assert not [k for k in got if k[0].startswith("payments.")]


def test_objects_in_other_schemas_are_qualified(live: str) -> None:
    execute(live, "CREATE SCHEMA sales", "CREATE TABLE sales.leads (id int)")
    _, rows, _ = diff_rows()
    assert {"object": "sales.leads", "kind": "table", "expected": None, "actual": "table"} in rows


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_every_format(live: str, fmt: str) -> None:
    execute(live, "ALTER TABLE users ADD COLUMN x int")
    done = invoke(["schema", "diff", "-f", fmt])
    assert done.exit_code == 0, done.stderr
    if fmt == "csv":
        assert done.stdout.splitlines() == ["object,kind,expected,actual", "users.x,column,,integer"]
    elif fmt == "jsonl":
        assert [json.loads(line) for line in done.stdout.splitlines()] == [
            {"object": "users.x", "kind": "column", "expected": None, "actual": "integer"}]
    else:
        assert "users.x" in done.stdout and "integer" in done.stdout


def test_pending_migration_shows_as_missing_objects(tmp_path: Path, live: str) -> None:
    schema = tmp_path / "myschema"
    shutil.copytree(default_dir() / "postgres", schema / "postgres")
    (schema / "postgres" / "0099_nickname.sql").write_text("ALTER TABLE users ADD COLUMN nickname text;\n")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": live}, "schema": {"dir": str(schema)}})
    code, rows, _ = diff_rows("--exit-code")
    assert code == 8
    assert rows == [{"object": "users.nickname", "kind": "column", "expected": "text", "actual": None}]


def test_a_failing_migration_drops_the_scratch_database(tmp_path: Path, live: str, pg_server: Any) -> None:
    schema = tmp_path / "myschema"
    shutil.copytree(default_dir() / "postgres", schema / "postgres")
    (schema / "postgres" / "0099_broken.sql").write_text("ALTER TABLE no_such_table ADD COLUMN y int;\n")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": live}, "schema": {"dir": str(schema)}})
    done = invoke(["schema", "diff"])
    assert done.exit_code == 5, done.stderr
    assert "scratch database" in done.stderr and "0099_broken.sql" in done.stderr
    assert done.stdout == ""
    assert scratch_databases(pg_server) == []


@pytest.fixture
def no_createdb_role(pg_server: Any, schema_db: str) -> Iterator[str]:
    role = f"r_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(f"pw-{role}")))
    yield role
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_role_without_createdb_exits_3_with_a_hint(tmp_path: Path, pg_server: Any, schema_db: str,
                                                     no_createdb_role: str) -> None:
    dsn = pg_server.conninfo(schema_db)
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": dsn, "user": no_createdb_role,
                                                        "password": f"pw-{no_createdb_role}"}})
    done = invoke(["schema", "diff", "--exit-code"])
    assert done.exit_code == 3, done.stderr
    assert "may not create" in done.stderr and "CREATEDB" in done.stderr
    assert f"pw-{no_createdb_role}" not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_drops_the_scratch_database(tmp_path: Path, live: str, pg_server: Any, signum: int) -> None:
    """Ctrl-C, and SIGTERM as a CI job's timeout or docker stop sends it: the scratch database goes."""
    schema = tmp_path / "myschema"
    shutil.copytree(default_dir() / "postgres", schema / "postgres")
    (schema / "postgres" / "0099_slow.sql").write_text("SELECT pg_sleep(30);\n")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": live}, "schema": {"dir": str(schema)}})
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "schema", "diff"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while not scratch_databases(pg_server):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # into the migrations
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert scratch_databases(pg_server) == []


# an extension each test server ships (the pgserver wheel's PostgreSQL 16 has no contrib, but
# pgvector), with a column type it brings
EXTENSIONS = {"pg_trgm": "text", "hstore": "hstore", "vector": "vector(3)"}


def installable_extension(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions WHERE installed_version IS NULL")}
    found = next((name for name in EXTENSIONS if name in names), None)
    if found is None:
        pytest.skip(f"the server ships none of {', '.join(EXTENSIONS)}")
    return found


def test_collation_identity_types_and_extensions(live: str) -> None:
    extension = installable_extension(live)
    execute(live,
            'ALTER TABLE addresses ALTER COLUMN line2 SET DATA TYPE text COLLATE "C"',
            "ALTER TABLE orders ALTER COLUMN order_id SET INCREMENT BY 2",
            "ALTER TABLE users ALTER COLUMN user_id DROP IDENTITY",
            "CREATE TYPE mood AS ENUM ('sad', 'happy')",
            "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
            sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(extension)))
    _, rows, _ = diff_rows()
    got = {(r["object"], r["kind"]): (r["expected"], r["actual"]) for r in rows}
    assert got[("addresses.line2", "column collation")] == (None, '"C"')
    want, have = got[("orders.order_id", "column identity sequence")]
    assert "increment 1 " in want and "increment 2 " in have
    # a column that lost its identity is one row: its sequence's options are not one more
    assert got[("users.user_id", "column identity")] == ("generated always as identity", None)
    assert ("users.user_id", "column identity sequence") not in got
    assert got[("mood", "enum")] == (None, "('sad', 'happy')")
    assert got[("posint", "domain")] == (None, "integer CHECK (VALUE > 0)")
    assert got[(extension, "extension")] == (None, "in schema public")
    assert len(rows) == 6, rows


def test_types_and_extensions_of_the_migrations_are_no_drift(tmp_path: Path, live: str) -> None:
    schema = tmp_path / "myschema"
    shutil.copytree(default_dir() / "postgres", schema / "postgres")
    types = schema / "postgres" / "0099_types.sql"
    extension = installable_extension(live)
    # a migration file's text, as a user writes it; the names come from the fixed EXTENSIONS table
    create = sql.SQL("CREATE EXTENSION IF NOT EXISTS {};\n").format(sql.Identifier(extension)).as_string()
    types.write_text(
        create +
        "CREATE TYPE mood AS ENUM ('sad', 'happy');\n"
        "CREATE DOMAIN posint AS int NOT NULL DEFAULT 1 CHECK (VALUE > 0);\n"
        "CREATE TYPE pair AS (a int, b text);\n"
        "CREATE TABLE notes (id int GENERATED BY DEFAULT AS IDENTITY (INCREMENT 5), m mood, n posint, p pair,\n"
        f"  h {EXTENSIONS[extension]}, t text COLLATE \"C\", at timestamptz DEFAULT '2024-01-01 00:00:00+00');\n")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": live}, "schema": {"dir": str(schema)}})
    execute(live, types.read_text())  # what schema apply runs
    code, rows, err = diff_rows("--exit-code")
    assert (code, rows) == (0, []), err
    # the live database's own time zone prints the same default otherwise: still no drift
    dbname = conninfo_to_dict(live)["dbname"]
    execute(live, sql.SQL("ALTER DATABASE {} SET timezone = 'Asia/Tokyo'").format(sql.Identifier(dbname)))
    code, rows, err = diff_rows("--exit-code")
    assert (code, rows) == (0, []), err
    execute(live, "ALTER TYPE mood ADD VALUE 'meh'", "ALTER DOMAIN posint DROP DEFAULT")
    _, rows, _ = diff_rows()
    got = {(r["object"], r["kind"]): (r["expected"], r["actual"]) for r in rows}
    assert got == {("mood", "enum"): ("('sad', 'happy')", "('sad', 'happy', 'meh')"),
                   ("posint", "domain"): ("integer not null default 1 CHECK (VALUE > 0)",
                                          "integer not null CHECK (VALUE > 0)")}


def test_a_killed_runs_scratch_database_is_dropped_by_the_next_run(live: str, pg_server: Any) -> None:
    """kill -9 leaves the scratch database (nothing runs in a killed process): the next run drops the
    ones older than a minute that no session uses, and names the ones it cannot drop."""
    with pg_server.admin() as conn:
        row = conn.execute("SELECT extract(epoch FROM now())::bigint").fetchone()
    old = int(row[0]) - 3600
    stale, busy, young = f"{PREFIX}{old}_aaaaaa", f"{PREFIX}{old}_bbbbbb", f"{PREFIX}{old + 3599}_cccccc"
    for name in (stale, busy, young):
        execute(pg_server.conninfo("postgres"), sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(pg_server.conninfo(busy)):  # a killed run's statement still running there
            code, rows, err = diff_rows("--exit-code")
        assert (code, rows) == (0, []), err
        assert f"dropped 1 scratch database(s) left by a killed schema diff: {stale}" in err
        assert busy in err.split("in use or owned by another role: ")[1]
        assert sorted(scratch_databases(pg_server)) == [busy, young]  # a run a second old may be starting
        _, _, err = diff_rows()
        assert "dropped 1 scratch database(s)" in err and busy in err
    finally:
        for name in (stale, busy, young):
            execute(pg_server.conninfo("postgres"),
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---- MongoDB -----------------------------------------------------------------------------------

def test_mongo_indexes_against_the_specs(schema_full_config_file: Path, mongo_server: Any, mongo_db: str) -> None:
    assert invoke(["schema", "apply", "--target", "mongo"]).exit_code == 0
    code, rows, _ = diff_rows("--target", "mongo", "--exit-code")
    assert (code, rows) == (0, [])
    client = mongo_server.client()
    try:
        coll = client[mongo_db]["user_activities"]
        declared = [ix["name"] for ix in coll.list_indexes() if ix["name"] != "_id_"]
        coll.drop_index(declared[0])
        coll.create_index([("extra_field", 1)], name="extra_field_1")
    finally:
        client.close()
    code, rows, _ = diff_rows("--target", "mongo", "--exit-code")
    assert code == 8
    got = {(r["object"], r["kind"]): (r["expected"], r["actual"]) for r in rows}
    assert got[(f"user_activities.{declared[0]}", "collection index")][1] is None
    assert got[("user_activities.extra_field_1", "collection index")] == (None, "{extra_field: 1}")


def test_a_missing_collection(schema_full_config_file: Path) -> None:
    code, rows, _ = diff_rows("--target", "mongo")
    assert code == 0
    assert {"object": "user_activities", "kind": "collection", "expected": "collection", "actual": None} in rows
