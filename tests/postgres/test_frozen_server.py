"""A PostgreSQL that stops answering mid-command (SIGSTOP) ends the command with exit 4 in bounded
time (issue 15); one that is only slow is left to finish. The server is started for these tests
alone: freezing the shared one would stall every other test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_config

CONNECT_TIMEOUT = 2
LIVENESS_CHECK = 1
MARGIN = 5  # start-up of the CLI, the last interval of the wait, a loaded machine


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from dbcli.postgres import embedded

    data_dir = tmp_path_factory.mktemp("frozen-pg") / "data"
    server = embedded.ensure_running(data_dir, "frozen")
    yield server
    _signal_all(server.pid, signal.SIGCONT)
    embedded.stop(data_dir)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _signal_all(pid: int, sig: signal.Signals) -> None:
    """The postmaster and its children (each in its own session, so not one process group)."""
    for p in [pid, *_children(pid)]:
        with suppress(ProcessLookupError):
            os.kill(p, sig)


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    _signal_all(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal_all(pid, signal.SIGCONT)


@pytest.fixture
def frozen_config(tmp_path: Path, own_server: Any) -> Path:
    info = own_server.conninfo("frozen")
    return write_config(tmp_path / "dbcli.yaml", {"postgres": {
        "embedded": False, "host": info["host"], "port": int(info["port"]), "user": info["user"],
        "dbname": "frozen", "connect_timeout": CONNECT_TIMEOUT, "liveness_check": LIVENESS_CHECK}})


def _admin(server: Any) -> Any:
    import psycopg
    from psycopg.conninfo import make_conninfo

    return psycopg.connect(make_conninfo(**server.conninfo("frozen")), autocommit=True)


def test_import_into_a_frozen_server_exits_4_within_the_limit(own_server: Any, frozen_config: Path,
                                                              tmp_path: Path) -> None:
    with _admin(own_server) as conn:
        conn.execute("DROP TABLE IF EXISTS big; CREATE TABLE big (id int PRIMARY KEY, body text)")
    source = tmp_path / "big.csv"
    with open(source, "w") as fh:
        fh.write("id,body\n")
        fh.writelines(f"{i},row {i} with some text to make the copy take a while\n" for i in range(1_500_000))
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "table", "import", "big", str(source)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with _admin(own_server) as conn:  # wait until the COPY is on the wire
            deadline = time.monotonic() + 60
            while not conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY%%' "
                                   "AND pid <> pg_backend_pid()").fetchone():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
        with frozen(own_server.pid):
            started = time.monotonic()
            _, err = proc.communicate(timeout=LIVENESS_CHECK + CONNECT_TIMEOUT + MARGIN)
            took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    assert err.startswith("Error: PostgreSQL stopped answering"), err
    assert took < LIVENESS_CHECK + CONNECT_TIMEOUT + MARGIN
    with _admin(own_server) as conn:  # thawed: all or nothing held
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (0,)


def test_a_slow_statement_is_not_cut(own_server: Any, frozen_config: Path, load_cfg: Any) -> None:
    from dbcli.postgres.connection import connect

    started = time.monotonic()
    with connect(load_cfg()) as conn:  # checked three times: the server answers, the wait goes on
        assert conn.execute("SELECT pg_sleep(3.5), 1").fetchone() == ("", 1)
    assert time.monotonic() - started >= 3.5


def test_a_frozen_server_is_found_out_by_a_plain_query(own_server: Any, frozen_config: Path,
                                                       load_cfg: Any) -> None:
    from dbcli.errors import UnreachableError
    from dbcli.postgres.connection import connect

    conn = connect(load_cfg())
    try:
        with frozen(own_server.pid):
            started = time.monotonic()
            with pytest.raises(UnreachableError, match="stopped answering"):
                conn.execute("SELECT 1")
            assert time.monotonic() - started < LIVENESS_CHECK + CONNECT_TIMEOUT + MARGIN
        assert conn.closed
    finally:
        conn.close()
