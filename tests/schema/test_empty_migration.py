"""A migration file with no statement (``schema new``'s header alone) is refused by ``schema apply``
before anything runs, instead of being recorded empty: the change written into it afterwards would
otherwise be an "edited history" (exit 7) rather than a pending migration."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from dbcli.schema.files import default_dir
from dbcli.schema.statements import has_statement
from tests.helpers import invoke, write_config

SHOP = ["0001", "0002", "0003", "0004", "0005"]


def recorded(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM dbcli_schema_migrations ORDER BY version")]


def exists(dsn: str, relation: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


@pytest.fixture
def own_schema(tmp_path: Path, pg_conninfo: str) -> Path:
    """The shop's migrations in ./db, applied, and ./dbcli.yaml pointing at them."""
    shutil.copytree(default_dir() / "postgres", tmp_path / "db" / "postgres")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_conninfo}, "schema": {"dir": str(tmp_path / "db")}})
    assert invoke(["schema", "apply", "-q"]).exit_code == 0
    return tmp_path / "db" / "postgres"


def test_the_file_schema_new_wrote_is_refused_until_it_has_a_statement(own_schema: Path, pg_conninfo: str) -> None:
    assert invoke(["schema", "new", "add_notes", "-q"]).exit_code == 0
    new = own_schema / "0006_add_notes.sql"
    expected = ("Error: migration db/postgres/0006_add_notes.sql has no SQL statement, only comments; nothing was "
                "applied (hint: write the change into it, or delete it, then run schema apply again)\n")
    for args in (["schema", "apply"], ["schema", "apply", "--dry-run"], ["schema", "apply", "-f", "json"]):
        result = invoke(args)
        assert (result.exit_code, result.stderr, result.stdout) == (5, expected, ""), args
    assert recorded(pg_conninfo) == SHOP
    status = invoke(["schema", "status", "-f", "json"])
    assert {r["version"]: r["state"] for r in status.json()}["0006"] == "pending"

    new.write_text(new.read_text() + "CREATE TABLE notes (body text);\n")
    result = invoke(["schema", "apply", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert [r["item"] for r in result.json()] == ["0006_add_notes"]
    assert recorded(pg_conninfo) == [*SHOP, "0006"] and exists(pg_conninfo, "notes")


def test_an_empty_file_after_pending_ones_stops_the_whole_run(own_schema: Path, pg_conninfo: str) -> None:
    (own_schema / "0006_notes.sql").write_text("CREATE TABLE notes (body text);\n")
    (own_schema / "0007_later.sql").write_text("-- 0007_later: describe the change here.\n\n/* TODO */\n;\n")
    result = invoke(["schema", "apply"])
    assert result.exit_code == 5
    assert result.stderr.startswith("Error: migration db/postgres/0007_later.sql has no SQL statement")
    assert recorded(pg_conninfo) == SHOP and not exists(pg_conninfo, "notes")


@pytest.mark.parametrize(("text", "has"), [
    ("", False), ("\n\n", False), ("-- 0001_x: describe the change here.\n\n", False), ("/* a; /* b */ */\n", False),
    (";\n ; -- nothing\n", False), ("SELECT 1", True), ("-- header\nCREATE TABLE t (id int);\n", True),
    ("/* c */ DO $$ BEGIN END $$;", True),
])
def test_has_statement(text: str, has: bool) -> None:
    assert has_statement(text) is has
