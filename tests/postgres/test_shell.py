"""``dbcli psql`` and ``dbcli env`` against the test servers: psql on the profile, its exit code as
dbcli's, the password never in any process's argv, and the variables for other clients."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.fix_pg import PgServer
from tests.helpers import invoke, run_entry, write_config

PASSWORD = "s3cret-Pa55:word"


@pytest.fixture
def role_with_password(pg_server: PgServer, pg_db: str) -> Iterator[str]:
    """A login role with a password that owns the test database."""
    role = f"r_{pg_db}"
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(pg_db), sql.Identifier(role)))
    yield role
    pg_server.drop_database(pg_db)
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def password_config(tmp_path: Path, pg_conninfo: str, role_with_password: str) -> Path:
    return write_config(tmp_path / "dbcli.yaml", {"postgres": {
        "dsn": pg_conninfo, "user": role_with_password, "password": PASSWORD}})


def test_psql_runs_a_command_on_the_profile(config_file: Path) -> None:
    result = run_entry(["psql", "--", "-XAtc", "select 1"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1\n"


def test_psql_exit_code_is_dbcli_exit_code(config_file: Path, tmp_path: Path) -> None:
    script = tmp_path / "bad.sql"
    script.write_text("select 1/0;\n")
    result = run_entry(["psql", "--", "-X", "-v", "ON_ERROR_STOP=1", "-f", str(script)])
    assert result.exit_code == 3  # psql's "error in a script with ON_ERROR_STOP"
    assert "division by zero" in result.stderr
    assert run_entry(["psql", "--", "-Xc", "select 1/0"]).exit_code == 1


def test_psql_reads_stdin(config_file: Path) -> None:
    result = run_entry(["psql", "--", "-XAt"], input="select 40 + 2;\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "42\n"


def _argv_and_environ_of_all() -> list[bytes]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in ("cmdline", "environ"):
            with contextlib.suppress(OSError):  # gone, or not ours to read
                found.append(Path(f"/proc/{pid}/{name}").read_bytes())
    return found


def test_psql_password_never_in_argv_or_environment(password_config: Path, role_with_password: str,
                                                    tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"  # where the passfile goes, to see it removed
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "psql", "--", "-XAtc",
                             "select current_user, pg_sleep(2)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    try:
        seen_psql = False
        passfiles: set[int] = set()
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            everything = _argv_and_environ_of_all()
            assert not [p for p in everything if PASSWORD.encode() in p]
            seen_psql = seen_psql or any(b"psql\0--dbname=" in p for p in everything)
            for passfile in tmp.glob("dbcli-pgpass-*/pgpass"):
                with contextlib.suppress(FileNotFoundError):  # removed as psql exits
                    passfiles.add(passfile.stat().st_mode & 0o777)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert seen_psql
    assert passfiles == {0o600}
    assert out.startswith(f"{role_with_password}|")
    assert list(tmp.iterdir()) == []


def test_env_exports_the_profile(password_config: Path, pg_server: PgServer, pg_db: str,
                                 role_with_password: str) -> None:
    result = invoke(["env"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"export PGDATABASE={pg_db}" in lines
    assert f"export PGUSER={role_with_password}" in lines
    assert "export PGPASSWORD='***'" in lines
    assert PASSWORD not in result.stdout
    shown = invoke(["env", "--show-secrets", "--format", "json"]).json()
    assert shown["PGPASSWORD"] == PASSWORD
    assert shown["PGHOST"] == str(pg_server.params.get("host"))
    # the printed lines are what psql needs: eval them in a shell and connect
    script = f'eval "$({sys.executable} -m dbcli env --show-secrets)"; psql -XAtc "select current_user"'
    psql_dir = subprocess.run([sys.executable, "-c", "from dbcli.postgres.embedded import bin_dir; print(bin_dir())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "PATH": psql_dir + os.pathsep + os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{role_with_password}\n"


def test_env_with_mongo_masks_the_uri_password(tmp_path: Path, pg_conninfo: str, mongo_server: Any,
                                               mongo_db: str) -> None:
    uri = mongo_server.uri.replace("mongodb://", "mongodb://alice:hunter2@", 1) if "@" not in mongo_server.uri \
        else mongo_server.uri
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_conninfo},
                                           "mongo": {"uri": uri, "database": mongo_db}})
    masked = invoke(["env", "-f", "json"])
    assert masked.exit_code == 0, masked.stderr
    values = masked.json()
    assert values["MONGODB_DATABASE"] == mongo_db
    assert "hunter2" not in masked.stdout and ":***@" in values["MONGODB_URI"]
    assert invoke(["env", "-f", "json", "--show-secrets"]).json()["MONGODB_URI"] == uri
    assert f"export MONGODB_DATABASE={mongo_db}" in invoke(["env"]).stdout.splitlines()


def test_env_embedded_server_socket_dir_as_pghost(tmp_path: Path, pg_server: PgServer, pg_db: str) -> None:
    if pg_server.data_dir is None:
        pytest.skip("the test server is not a local data directory")
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"embedded": True, "data_dir": str(pg_server.data_dir),
                                                        "dbname": pg_db}})
    result = invoke(["env", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    values = result.json()
    assert Path(values["PGHOST"]).is_dir()
    assert values["PGDATABASE"] == pg_db
    assert "MONGODB_URI" not in values
    assert run_entry(["psql", "--", "-XAtc", "select current_database()"]).stdout == f"{pg_db}\n"


def test_env_bad_format_is_a_usage_error(config_file: Path) -> None:
    result = invoke(["env", "--format", "csv"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1


def test_psql_unreachable_server_exits_as_psql(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql://nobody@127.0.0.1:9/none",
                                                        "connect_timeout": 2}})
    result = run_entry(["psql", "--", "-Xc", "select 1"])
    assert result.exit_code == 2  # psql: the connection failed
    assert "127.0.0.1" in result.stderr
