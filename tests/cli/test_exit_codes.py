"""One test per documented exit code, through the real command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import invoke, run_entry, write_config


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_0_success(config_file: Path) -> None:
    assert invoke(["ping", "-q"]).exit_code == 0


def test_1_unexpected_error_is_one_line(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dbcli.servers.health

    def broken(cfg: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(dbcli.servers.health, "ping_all", broken)
    result = invoke(["ping"])
    assert result.exit_code == 1
    assert result.stderr == "Error: unexpected RuntimeError: boom (hint: run again with --debug for a traceback)\n"
    debug = invoke(["--debug", "ping"])
    assert debug.exit_code == 1  # --debug changes what is printed, never the code
    assert "Traceback (most recent call last)" in debug.stderr and "RuntimeError: boom" in debug.stderr
    assert debug.stderr.endswith("Error: unexpected RuntimeError: boom\n")


@pytest.mark.parametrize("how", ["--debug", "DBCLI_DEBUG=1"])
def test_debug_keeps_the_exit_code(schema_config_file: Path, tmp_path: Path, how: str) -> None:
    # issue 15: `dbcli --debug table get users 99999` exited 1 (the traceback re-raised), not 6
    args = ["table", "get", "users", "99999"]
    plain = run_entry(args)
    debug = run_entry(["--debug", *args]) if how == "--debug" else run_entry(args, env={"DBCLI_DEBUG": "1"})
    assert plain.exit_code == debug.exit_code == 6
    assert "Traceback" not in plain.stderr and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.strip()
    # every error class: a usage error, a configuration error
    bad = tmp_path / "bad.yaml"
    bad.write_text("postgres: {prot: 1}\n")
    for argv, code in ((["table", "get", "users"], 2), (["-c", str(bad), "ping"], 3)):
        assert run_entry(argv).exit_code == code
        assert run_entry(["--debug", *argv]).exit_code == code


def test_2_usage_error() -> None:
    result = invoke(["ping", "--no-such-option"])
    assert result.exit_code == 2
    assert "No such option: --no-such-option" in result.stderr


def test_3_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "dbcli.yaml").write_text("postgres: {prot: 1}\n")
    result = invoke(["ping"])
    assert result.exit_code == 3
    assert result.stderr == "Error: unknown key 'postgres.prot' (hint: did you mean 'port'?)\n"


def test_4_unreachable(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": closed_port(),
                                                        "connect_timeout": 1}})
    result = invoke(["ping"])
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: postgres is unreachable: cannot connect to PostgreSQL")


def test_130_interrupted(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": closed_port(),
                                                        "connect_timeout": 1}})
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "wait", "--timeout", "60"], cwd=tmp_path,
                            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "Error: interrupted"


@pytest.mark.parametrize(("args", "code", "message"), [
    # a malformed option value is a usage error (2), found before any server is asked...
    (["report", "run", "daily-revenue", "--param", "from"], 2, "--param 'from': expected KEY=VALUE"),
    (["table", "find", "orders", "--where", "user_id"], 2,
     "--where 'user_id': expected COL=VALUE (or !=, <, <=, >, >=, ~, is null, is not null)"),
    # ...a well-formed value that the data rejects is invalid input (5)
    (["report", "run", "daily-revenue", "--param", "from=yesterday"], 5,
     "report 'daily-revenue': parameter 'from' must be a date (YYYY-MM-DD, today, today-7d), got 'yesterday'"),
    (["table", "find", "orders", "--where", "user_id=abc"], 5, "--where user_id: "),
])
def test_2_usage_error_versus_5_invalid_value(schema_config_file: Path, args: list[str], code: int,
                                              message: str) -> None:
    # issue 15: `--param from` exited 5 while `--where user_id` exited 2
    result = invoke(args)
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith(f"Error: {message}")
