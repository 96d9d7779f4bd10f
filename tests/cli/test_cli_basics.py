"""ping, wait, version, help, local status/stop, output formats, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fix_pg import PgServer
from tests.helpers import invoke, run_entry, write_config


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("dbcli ")


def test_help_imports_no_driver() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dbcli", "--help"],
                          capture_output=True, text=True, check=True)
    modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert not [m for m in modules if m.split(".")[0] in ("psycopg", "pymongo", "bson", "psycopg_pool")]
    assert "Usage" in proc.stdout


def test_ping_against_test_server(config_file: Path, pg_server: PgServer) -> None:
    result = invoke(["ping", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    (row,) = result.json()
    assert row["server"] == "postgres" and row["status"] == "ok"
    assert row["version"].startswith(f"PostgreSQL {pg_server.major}.")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_ping_formats(config_file: Path, fmt: str) -> None:
    result = invoke(["ping", "--format", fmt])
    assert result.exit_code == 0
    if fmt == "json":
        assert isinstance(json.loads(result.stdout), list)
    elif fmt == "jsonl":
        assert json.loads(result.stdout.splitlines()[0])["server"] == "postgres"
    elif fmt == "csv":
        assert result.stdout.splitlines()[0] == "server,status,version,rtt_ms,target,error"
    else:
        assert "postgres" in result.stdout and "\x1b[" not in result.stdout  # not a TTY: no colour


def test_unknown_format_is_usage_error(config_file: Path) -> None:
    result = invoke(["ping", "--format", "xml"])
    assert result.exit_code == 2
    assert "unknown format 'xml'" in result.stderr


def test_quiet_prints_nothing(config_file: Path) -> None:
    result = invoke(["ping", "--quiet"])
    assert result == type(result)(0, "", "")


def test_ping_closed_port_exits_4_within_timeout(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": port, "user": "x",
                                                        "password": "hunter2", "connect_timeout": 2}})
    start = time.monotonic()
    result = invoke(["ping"])
    assert result.exit_code == 4
    assert time.monotonic() - start < 3
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stderr.startswith("Error: postgres is unreachable")


def test_ping_blackholed_address_respects_connect_timeout(tmp_path: Path) -> None:
    # 10.255.255.1 is never routed here; a SYN to it goes unanswered... but we may not send
    # traffic off-machine, so use a listening socket that never accepts instead.
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    try:
        write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": port,
                                                            "connect_timeout": 1}})
        start = time.monotonic()
        result = invoke(["ping"])
        assert result.exit_code == 4
        assert time.monotonic() - start < 5
    finally:
        srv.close()


def test_wait_times_out_with_4(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": 1, "connect_timeout": 1}})
    start = time.monotonic()
    result = invoke(["wait", "--timeout", "1.5"])
    assert result.exit_code == 4
    assert "timed out after 1.5s" in result.stderr
    assert time.monotonic() - start < 6


def test_wait_succeeds(config_file: Path) -> None:
    result = invoke(["wait", "--timeout", "10", "-f", "json"])
    assert result.exit_code == 0
    assert result.json()[0]["status"] == "ok"


def test_entry_point_subprocess(config_file: Path) -> None:
    result = run_entry(["ping", "-f", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"


def test_unexpected_error_is_one_line_and_debug_shows_traceback(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "host=h port=notaport connect_timeout=1"}})
    result = run_entry(["ping"])
    assert result.exit_code in (3, 4)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_json_keeps_types() -> None:
    import datetime as dt
    from decimal import Decimal

    from dbcli.output import to_json

    value = {"n": Decimal("12345678901234567890.10"), "f": 1.5, "nan": float("nan"),
             "t": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), "b": b"\x00\x01", "s": "a\u00e9"}
    assert to_json(value) == ('{"n":12345678901234567890.10,"f":1.5,"nan":"nan",'
                              '"t":"2024-05-06T07:08:09+00:00","b":"AAE=","s":"a\u00e9"}')
    assert to_json({"n": Decimal("12.50"), "inf": Decimal("Infinity")}) == '{"n":12.50,"inf":"Infinity"}'


def test_help_prints_examples_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 15: Click re-wrapped the Example paragraph, breaking a command mid-line at 80 columns
    from dbcli.cli.reference import example_lines, root_command, walk

    monkeypatch.setenv("COLUMNS", "80")
    longest = ""
    for path, cmd in walk(root_command()):
        result = invoke([*path, "--help"])
        assert result.exit_code == 0, path
        shown = [line.strip() for line in result.stdout.splitlines()]
        assert "\b" not in result.stdout
        for line in example_lines(cmd.help or ""):
            assert line in shown, (path, line)
            longest = max(longest, line, key=len)
    assert len(longest) > 100  # a line that a wrap at 80 columns would have cut
