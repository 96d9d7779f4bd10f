"""One test per documented exit code, through the real command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import invoke, write_config


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
    with pytest.raises(RuntimeError):
        invoke(["--debug", "ping"])


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
