"""The embedded default: a new user with no config gets the wheel's PostgreSQL started on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix_pg import wheel_major
from tests.helpers import invoke, write_config

pytestmark = pytest.mark.skipif(bool(os.environ.get("DBCLI_TEST_PG_DSN")),
                                reason="uses the embedded server, not $DBCLI_TEST_PG_DSN")


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Path:
    # a short path: the server's Unix socket lives in the data dir and socket paths are limited
    return tmp_path / "home" / "xdg_data_home" / "dbcli" / "local" / "postgres"


def test_no_config_ping_starts_embedded_postgres(embedded_dir: Path) -> None:
    try:
        result = invoke(["ping", "-f", "json"])
        assert result.exit_code == 0, result.stderr
        assert result.json()[0]["version"].startswith(f"PostgreSQL {wheel_major()}.")
        status = invoke(["local", "status", "-f", "json"]).json()
        assert status[0]["state"] == "running"
        assert status[0]["data_dir"] == str(embedded_dir)
        # a second command reuses the running server
        pid = status[0]["pid"]
        assert invoke(["ping"]).exit_code == 0
        assert invoke(["local", "status", "-f", "json"]).json()[0]["pid"] == pid
    finally:
        stop = invoke(["local", "stop"])
    assert stop.exit_code == 0
    assert "postgres: stopped" in stop.stderr
    assert invoke(["local", "status", "-f", "json"]).json()[0]["state"] == "stopped"


def test_two_concurrent_pings_share_one_server(embedded_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ}
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "dbcli", "ping", "-f", "json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        pids = {invoke(["local", "status", "-f", "json"]).json()[0]["pid"]}
        assert len(pids) == 1
    finally:
        invoke(["local", "stop"])


def test_postgres_data_dir_override(tmp_path: Path) -> None:
    data = tmp_path / "pgd"
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"embedded": True, "data_dir": str(data)}})
    try:
        assert invoke(["ping"]).exit_code == 0
        assert (data / "PG_VERSION").read_text().strip() == str(wheel_major())
    finally:
        invoke(["local", "stop"])


def test_local_mongo_embedded(tmp_path: Path, mongo_server: object) -> None:
    binary = getattr(mongo_server, "binary", None)
    if binary is None:
        pytest.skip("needs a FerretDB binary (tests run against $DBCLI_TEST_MONGO_URI)")
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"embedded": True, "binary": binary}})
    try:
        result = invoke(["ping", "-f", "json"])
        assert result.exit_code == 0, result.stderr
        assert [r["status"] for r in result.json()] == ["ok", "ok"]
        assert result.json()[1]["version"].startswith("FerretDB 1.24")
        status = {r["server"]: r for r in invoke(["local", "status", "-f", "json"]).json()}
        assert status["mongo"]["state"] == "running"
    finally:
        invoke(["local", "stop"])


def test_local_stop_finds_a_mongo_started_without_mongo_config(tmp_path: Path, mongo_server: object) -> None:
    # `dbcli demo` starts a local FerretDB for a profile that configures no MongoDB
    binary = getattr(mongo_server, "binary", None)
    if binary is None:
        pytest.skip("needs a FerretDB binary (tests run against $DBCLI_TEST_MONGO_URI)")
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"embedded": True, "binary": binary}})
    try:
        assert invoke(["ping"]).exit_code == 0
        write_config(tmp_path / "dbcli.yaml", {"postgres": {"embedded": True}})
        status = {r["server"]: r for r in invoke(["local", "status", "-f", "json"]).json()}
        assert status["mongo"]["state"] == "running"
        assert "mongo: stopped" in invoke(["local", "stop"]).stderr
        assert [r["server"] for r in invoke(["local", "status", "-f", "json"]).json()] == ["postgres"]
    finally:
        write_config(tmp_path / "dbcli.yaml", {"mongo": {"embedded": True, "binary": binary}})
        invoke(["local", "stop"])
