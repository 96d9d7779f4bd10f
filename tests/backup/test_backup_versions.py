"""Backups across PostgreSQL versions (issue 15, item 2): the wheel's pg_dump/pg_restore 18 and
Debian's PostgreSQL 15, an older pg_restore, a server older than the backup's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_backup import PG15_BIN, SEED_SIZES
from tests.fix_pg import PgServer, wheel_major
from tests.helpers import write_config


def _counts(pg: PgServer, db: str) -> dict[str, int]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg.conninfo(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n "
                                             "ON n.oid = c.relnamespace WHERE relkind = 'r' "
                                             "AND nspname = 'public' ORDER BY 1").fetchall()]
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in tables}
        counts["large objects"] = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    return counts


@pytest.fixture
def pg15_seeded(pg15_server: PgServer, cli: Any, tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL 15 database with the e-commerce schema and a little data; ./dbcli.yaml points at it."""
    from dbcli.config.load import load_config
    from dbcli.shop.seed.load import seed

    db = pg15_server.create_database()
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg15_server.conninfo(db)}})
    assert cli("-q", "schema", "apply").exit_code == 0
    seed(load_config(), **{**SEED_SIZES, "events": 0})
    yield db
    pg15_server.drop_database(db)


@pytest.mark.parametrize("large_object", [False, True], ids=["plain", "large-object"])
def test_pg15_backup_verifies_and_restores_with_the_wheels_tools(cli: Any, pg15_server: PgServer, pg15_seeded: str,
                                                                 tmp_path: Path, large_object: bool) -> None:
    """pg_restore 18 writes `SET transaction_timeout = 0;`, which PostgreSQL 15 rejects: verify
    --restore-test exited 8 and restore 1. The line is dropped for servers older than 17."""
    if large_object:  # the script then passes through dbcli anyway (--single-transaction)
        import psycopg

        with psycopg.connect(pg15_server.conninfo(pg15_seeded), autocommit=True) as conn:
            conn.execute("SELECT lo_from_bytea(0, 'dbcli')")
    made = cli("backup", "create", "--dir", "b", "-f", "json")
    assert made.exit_code == 0, made.stderr
    manifest = json.loads((tmp_path / "b" / made.json()["id"] / "manifest.json").read_text())
    assert manifest["postgres"]["server_version"].startswith("15.")
    checked = cli("backup", "verify", "--latest", "--restore-test", "--dir", "b", "-f", "json")
    assert checked.exit_code == 0, checked.stderr  # was 8: unrecognized configuration parameter
    assert all(c["ok"] is True for c in checked.json())
    target = pg15_server.create_database()
    try:
        write_config(tmp_path / "target.yaml", {"postgres": {"dsn": pg15_server.conninfo(target)}})
        restored = cli("--config", "target.yaml", "backup", "restore", "latest", "--dir", "b", "-f", "json")
        assert restored.exit_code == 0, restored.stderr  # was 1
        assert all(r["ok"] for r in restored.json())
        assert _counts(pg15_server, target) == _counts(pg15_server, pg15_seeded)
    finally:
        pg15_server.drop_database(target)
    listed = cli("backup", "list", "--dir", "b", "-f", "json").json()
    assert listed[0]["verified"].startswith("ok ")


@pytest.mark.skipif(wheel_major() <= 15, reason="the wheel's pg_dump is not newer than PostgreSQL 15's pg_restore")
def test_pg_restore_older_than_the_archive_is_a_tool_to_configure(cli: Any, pg15_server: PgServer,
                                                                   pg15_seeded: str, tmp_path: Path) -> None:
    """With backup.pg_dump set to PG 15's, a pg_dump 18 archive was reported as damaged (exit 8)."""
    made = cli("backup", "create", "--dir", "b", "-f", "json")
    assert made.exit_code == 0, made.stderr
    backup_id = made.json()["id"]
    dumped_by = json.loads((tmp_path / "b" / backup_id / "manifest.json").read_text())["postgres"]["pg_dump_version"]
    need = int(dumped_by.split(".")[0])
    assert need == wheel_major()
    settings = {"postgres": {"dsn": pg15_server.conninfo(pg15_seeded)},
                "backup": {"pg_dump": str(PG15_BIN / "pg_dump")}}
    write_config(tmp_path / "dbcli.yaml", settings)
    checked = cli("backup", "verify", backup_id, "--dir", "b", "-f", "json")
    assert checked.exit_code == 3, checked.stderr
    rows = {c["check"]: c for c in checked.json()}
    assert rows["pg_restore"]["ok"] is None and rows["checksum"]["ok"] is True
    assert checked.stderr.startswith(f"Error: backup {backup_id} could not be verified: postgres/")
    assert f"needs pg_restore >= {need} ({PG15_BIN / 'pg_restore'} is 15." in checked.stderr
    listed = cli("backup", "list", "--dir", "b", "-f", "json").json()
    assert listed[0]["verified"].startswith("unverified ") and "needs pg_restore" in listed[0]["verified"]
    record = json.loads((tmp_path / "b" / backup_id / "verify.json").read_text())
    assert (record["state"], record["ok"], record["problems"]) == ("unverified", None, [])

    target = pg15_server.create_database()
    try:
        write_config(tmp_path / "target.yaml", {**settings, "postgres": {"dsn": pg15_server.conninfo(target)}})
        restored = cli("--config", "target.yaml", "backup", "restore", backup_id, "--dir", "b")
        assert restored.exit_code == 3  # was 8: "damaged"
        assert restored.stderr.startswith(f"Error: the archive was written by pg_dump {dumped_by}: it needs "
                                          f"pg_restore >= {need} ")
        assert _counts(pg15_server, target) == {"large objects": 0}
    finally:
        pg15_server.drop_database(target)


@pytest.mark.pg("> 15")
def test_a_backup_of_a_newer_server_is_refused_by_an_older_one(cli: Any, made_backup: Any, pg_server: PgServer,
                                                               pg15_server: PgServer, tmp_path: Path) -> None:
    source = pg_server.major
    root = made_backup.copy_to(tmp_path)
    target = pg15_server.create_database()
    try:
        write_config(tmp_path / "old.yaml", {"postgres": {"dsn": pg15_server.conninfo(target)}})
        restored = cli("--config", "old.yaml", "backup", "restore", made_backup.id, "--target", "postgres",
                       "--dir", str(root))
        assert restored.exit_code == 3
        assert restored.stderr == (f"Error: the backup holds a PostgreSQL {source} database: PostgreSQL 15 is "
                                   f"older and cannot restore it (hint: restore into PostgreSQL {source} or later)\n")
        assert _counts(pg15_server, target) == {"large objects": 0}
        # verified under that profile: the restore test cannot run there, which is not damage
        write_config(tmp_path / "old.yaml", {"postgres": {"dsn": pg15_server.conninfo(target)},
                                             "mongo": made_backup.settings["mongo"]})
        checked = cli("--config", "old.yaml", "backup", "verify", made_backup.id, "--restore-test",
                      "--dir", str(root), "-f", "json")
        assert checked.exit_code == 3, checked.stderr
        skipped = [c for c in checked.json() if c["ok"] is None]
        assert [c["check"] for c in skipped] == ["restore-test"]
        assert "PostgreSQL 15 is older and cannot restore it" in skipped[0]["detail"]
        assert any(c["subject"].startswith("mongo ") and c["ok"] for c in checked.json())  # the rest ran
    finally:
        pg15_server.drop_database(target)


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_only_the_prologue_loses_the_refused_line(block: int) -> None:
    """The same text later in the script (a COPY data row, say) is data and passes untouched."""
    from dbcli.backup.pg_compat import PrologueFilter, refused_lines

    script = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nBEGIN;\nSET statement_timeout = 0;\n"
              b"SET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n"
              b"CREATE TABLE public.t (x text);\nCOPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n")
    assert refused_lines(180000) == frozenset() and refused_lines(170000) == frozenset()
    prologue = PrologueFilter(refused_lines(150018))
    buf, sent = bytearray(), b""
    for at in range(0, len(script), block):
        buf += script[at:at + block]
        if prologue.feed(buf):
            sent, buf = sent + bytes(buf), bytearray()
    prologue.feed(buf, final=True)
    sent += bytes(buf)
    assert sent == script.replace(b"SET transaction_timeout = 0;\nSELECT", b"SELECT")
