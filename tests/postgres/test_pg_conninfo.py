"""pg_conninfo splits connection strings as libpq does; psql_error maps psql's errors as translate does."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from dbcli.config.load import load_config
from dbcli.errors import ConfigError, DbcliError, InvalidInputError, NotFoundError, UnreachableError
from dbcli.postgres import connection as postgres
from dbcli.postgres import conninfo as pg_conninfo
from dbcli.postgres.psql_session import psql_error
from tests.helpers import write_config


def _libpq(dsn: str) -> dict[str, str] | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except Exception:  # psycopg.ProgrammingError: libpq refused it
        return None


def _ours(dsn: str) -> dict[str, str] | None:
    try:
        return pg_conninfo.parse(dsn)
    except ValueError:
        return None


CASES = [
    "", "dbname=x", "  host = localhost   port=5432 dbname = 'my db' ", "password='a\\'b\\\\c' user=u",
    "host=a\\ b", "dbname=a dbname=b", "host=x port=", "application_name=é",
    "postgresql://", "postgresql://localhost", "postgres://u@h1:1,h2:2/db", "postgresql://h1,h2/db",
    "postgresql://u:p@h:5/db?sslmode=require&application_name=a%20b", "postgresql://h1:1,h2/db",
    "postgresql://[::1]:5432/db", "postgresql://%2Ftmp%2Fsock/db", "postgresql:///db?host=/tmp",
    "postgresql://u:@h/db", "postgresql://:p@h/db", "postgresql://u:p%40ss@h/db", "postgresql://h/db?ssl=true",
    "postgresql://h/d%C3%A9", "postgresql://h?dbname=x", "postgresql://h/db?", "postgresql://u@/db",
    "postgresql://h:/db", "postgresql://a@b@c/db", "postgresql://h/db/x", "postgresql://,/db",
    "postgresql://u:p:q@h", "postgresql://h/db?options=-c%20search_path%3Dx",
]
# strings libpq refuses: we must refuse them too (the caller then asks libpq for its message)
REFUSED = [
    "bogus=1", "host", "host='x", "postgresql://h/db?a", "postgresql://h/db?a=b=c", "postgresql://h/db?bogus=1",
    "postgresql://[]/db", "postgresql://[::1/db", "postgresql://h/%zz", "postgresql://h/a%00",
    "postgresql://[::1]x/db", "postgresql://h/?ssl=false",
]
# strings libpq reads differently from Python: we leave them to libpq
LEFT_TO_LIBPQ = ["host=good\0 host=evil", "postgresql://h/db?host=a\0&host=b", "postgresql://h/db "]


@pytest.mark.parametrize("dsn", CASES)
def test_parse_agrees_with_libpq(dsn: str) -> None:
    assert _libpq(dsn) is not None
    assert _ours(dsn) == _libpq(dsn)


@pytest.mark.parametrize("dsn", REFUSED)
def test_what_libpq_refuses_is_refused(dsn: str) -> None:
    assert _libpq(dsn) is None
    assert _ours(dsn) is None


@pytest.mark.parametrize("dsn", LEFT_TO_LIBPQ)
def test_what_libpq_reads_its_own_way_is_left_to_it(dsn: str) -> None:
    assert _ours(dsn) is None


def test_random_strings_are_parsed_as_libpq_does_or_left_to_it() -> None:
    # whatever we accept must be exactly libpq's reading; refusing is always safe (libpq decides then)
    rnd = random.Random(20261129)
    atoms = ["postgresql://", "postgres://", "host", "dbname", "user", "password", "port", "sslmode", "ssl", "=",
             " ", "'", "\\", "@", ":", "/", "?", "&", ",", "[", "]", "%", "%2F", "%41", "%00", "%zz", "::1", "h",
             "db", "5432", "true", "é", "\t", "x"]
    accepted = 0
    for _ in range(5000):
        dsn = rnd.choice(["", "postgresql://", "host=h "]) + "".join(
            rnd.choice(atoms) for _ in range(rnd.randint(0, 12)))
        ours = _ours(dsn)
        if ours is not None:
            accepted += 1
            assert ours == _libpq(dsn), dsn
    assert accepted > 500


def test_keywords_are_the_bundled_libpqs() -> None:
    from psycopg import pq

    assert {d.keyword.decode() for d in pq.Conninfo.get_defaults()} <= pg_conninfo.KEYWORDS


@pytest.mark.parametrize("settings", [
    {"dsn": "postgresql://app:s3cret@db.internal:6432/shop?sslmode=require&application_name=x", "dbname": "other"},
    {"dsn": "host=/tmp port=5433 user='a b' options='-c search_path=x'", "password": "p"},
    {"host": "db", "port": 5432, "user": "u", "dbname": "d", "sslmode": "disable"},
    {"dsn": "postgresql://h/db?ssl=true&target_session_attrs=read-write", "connect_timeout": 3},
])
def test_conn_params_without_psycopg_equal_libpqs_reading(tmp_path: Path, settings: dict[str, Any]) -> None:
    from psycopg.conninfo import conninfo_to_dict

    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": settings})))
    via_libpq = {k: str(v) for k, v in conninfo_to_dict(postgres.conninfo(cfg)).items() if v is not None}
    assert postgres.conn_params(cfg) == via_libpq
    assert postgres.conn_params(cfg, dbname="z")["dbname"] == "z"


def test_conn_params_of_a_dsn_only_libpq_reads(tmp_path: Path) -> None:
    # whitespace in a URI: left to libpq, which trims it
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql://h/db "}})))
    assert postgres.conn_params(cfg)["dbname"] == "db"


def test_malformed_dsn_gets_libpqs_message(tmp_path: Path) -> None:
    cfg = load_config(str(write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "host='unterminated"}})))
    with pytest.raises(ConfigError, match=r"^postgres\.dsn is not a valid connection string: .*unterminated"):
        postgres.conn_params(cfg)


@pytest.mark.parametrize(("stderr", "kind", "message"), [
    ("psql:<stdin>:4: ERROR:  57014: canceling statement due to statement timeout\nLOCATION:  ProcessInterrupts\n",
     UnreachableError, "statement timed out: canceling statement due to statement timeout"),
    ('psql:<stdin>:2: ERROR:  42501: permission denied for table t\n', InvalidInputError,
     "permission denied for table t"),
    ('psql: error: connection to server on socket "/tmp/.s.PGSQL.1" failed: No such file or directory\n'
     '\tIs the server running locally and accepting connections on that socket?\n', UnreachableError,
     'cannot connect to PostgreSQL: connection to server on socket "/tmp/.s.PGSQL.1" failed: '
     'No such file or directory'),
    ('psql: error: connection to server at "h" (10.0.0.1), port 5432 failed: FATAL:  database "x" does not exist\n',
     UnreachableError, 'cannot connect to PostgreSQL: connection to server at "h" (10.0.0.1), port 5432 failed: '
     'FATAL:  database "x" does not exist'),
    ("psql:<stdin>:1: FATAL:  3D000: database \"gone\" does not exist\n", NotFoundError,
     'database "gone" does not exist'),
    ("psql:<stdin>:9: server closed the connection unexpectedly\n\tThis probably means the server terminated "
     "abnormally\npsql:<stdin>:9: error: connection to server was lost\n", UnreachableError,
     "cannot connect to PostgreSQL: server closed the connection unexpectedly"),
    ("", DbcliError, "psql failed (exit 2): no message"),
])
def test_psql_errors_map_like_driver_errors(stderr: str, kind: type[DbcliError], message: str) -> None:
    error = psql_error(stderr, 3 if stderr else 2)
    assert type(error) is kind
    assert error.message == message


def test_tools_get_keywords_in_argv_and_the_password_in_a_passfile() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from dbcli.backup.pg import libpq_connection

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
