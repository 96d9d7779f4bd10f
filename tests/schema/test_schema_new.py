"""schema new: the next numbered migration file, atomic, never replacing one; bad names refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dbcli.config.load import load_config
from dbcli.errors import ConflictError
from dbcli.schema import authoring
from dbcli.schema.files import migrations
from tests.helpers import can_mount, dbcli_in_shell, invoke, write_config


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    root = tmp_path / "db"
    (root / "postgres").mkdir(parents=True)
    (root / "postgres" / "0001_users.sql").write_text("CREATE TABLE users (id int);\n")
    (root / "postgres" / "0002_orders.sql").write_text("CREATE TABLE orders (id int);\n")
    write_config(tmp_path / "dbcli.yaml", {"schema": {"dir": str(root)}})
    return root


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_writes_the_next_numbered_file(schema_dir: Path) -> None:
    done = invoke(["schema", "new", "add_user_nickname", "-f", "json"])
    assert done.exit_code == 0, done.stderr
    assert done.json() == [{"version": "0003", "name": "add_user_nickname",
                            "path": "db/postgres/0003_add_user_nickname.sql"}]
    path = schema_dir / "postgres" / "0003_add_user_nickname.sql"
    assert path.read_text().startswith("-- 0003_add_user_nickname: ")
    assert invoke(["schema", "new", "second"]).exit_code == 0
    assert files_in(schema_dir / "postgres") == ["0001_users.sql", "0002_orders.sql", "0003_add_user_nickname.sql",
                                                 "0004_second.sql"]
    # what schema apply reads: the new files are migrations like the others
    assert [m.version for m in migrations(load_config())] == ["0001", "0002", "0003", "0004"]


def test_keeps_the_width_of_wider_versions(schema_dir: Path) -> None:
    (schema_dir / "postgres" / "000100_wide.sql").write_text("SELECT 1;\n")
    assert invoke(["schema", "new", "next"]).exit_code == 0
    assert (schema_dir / "postgres" / "000101_next.sql").is_file()


@pytest.mark.parametrize("name", ["", "has space", "../escape", "a/b", "-dash-first", ".hidden", "x.sql",
                                  "é", "x" * 101, "semi;colon"])
def test_a_bad_name_exits_2_and_writes_nothing(schema_dir: Path, name: str) -> None:
    done = invoke(["schema", "new", name])
    assert done.exit_code == 2, done.stderr
    assert done.stderr.startswith("Error: ") and len(done.stderr.strip().splitlines()) == 1
    assert files_in(schema_dir / "postgres") == ["0001_users.sql", "0002_orders.sql"]
    assert files_in(schema_dir) == ["postgres"]
    assert set(files_in(schema_dir.parent)) <= {"db", "dbcli.yaml", "home"}


def test_without_schema_dir_exits_3(tmp_path: Path) -> None:
    done = invoke(["schema", "new", "x"])
    assert done.exit_code == 3
    assert "schema.dir" in done.stderr


def test_an_empty_schema_dir_gets_its_first_migration(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    write_config(tmp_path / "dbcli.yaml", {"schema": {"dir": str(root)}})
    assert invoke(["schema", "new", "init"]).exit_code == 0
    assert files_in(root / "postgres") == ["0001_init.sql"]


def test_a_schema_dir_laid_out_wrong_exits_3(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    (root / "0001_x.sql").write_text("SELECT 1;\n")
    write_config(tmp_path / "dbcli.yaml", {"schema": {"dir": str(root)}})
    assert invoke(["schema", "new", "y"]).exit_code == 3
    assert files_in(root) == ["0001_x.sql"]


def test_never_replaces_a_file(schema_dir: Path) -> None:
    taken = schema_dir / "postgres" / "0003_taken.sql"
    taken.write_text("keep me\n")
    with pytest.raises(ConflictError):
        authoring.write_new(taken, "new text\n")
    assert taken.read_text() == "keep me\n"
    assert files_in(schema_dir / "postgres") == ["0001_users.sql", "0002_orders.sql", "0003_taken.sql"]


def test_a_read_only_directory_exits_73(schema_dir: Path, tmp_path: Path) -> None:
    pg_dir = schema_dir / "postgres"
    if os.geteuid() == 0:  # root writes through permissions: make the directory a read-only mount
        if not can_mount(tmp_path):
            pytest.skip("no mount namespace here")
        done = dbcli_in_shell(f"mount --bind {pg_dir} {pg_dir}; mount -o remount,bind,ro {pg_dir}",
                              ["schema", "new", "x"], namespace=True)
    else:
        pg_dir.chmod(0o555)
        try:
            done = dbcli_in_shell("true", ["schema", "new", "x"])
        finally:
            pg_dir.chmod(0o755)
    assert done.returncode == 73, done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert files_in(pg_dir) == ["0001_users.sql", "0002_orders.sql"]
