"""A reader that goes away (`dbcli ... | head`): the command keeps its own status (issue 15, item 4).

Real pipes through bash: `${PIPESTATUS[0]}` is dbcli's own exit status, whatever the reader did.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fix_backup import MadeBackup


def piped(args: list[str], reader: str) -> tuple[int, str, str]:
    """Run ``dbcli ARGS | READER`` in bash; (dbcli's status, the reader's output, dbcli's stderr)."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "dbcli", *args])
    proc = subprocess.run(["bash", "-c", f'{command} 2>dbcli.err | {reader}; echo "status=${{PIPESTATUS[0]}}"'],
                          capture_output=True, text=True, timeout=300, check=False, env={**os.environ})
    *shown, status = proc.stdout.rstrip("\n").split("\n")
    assert status.startswith("status="), proc.stdout
    return int(status.removeprefix("status=")), "\n".join(shown), Path("dbcli.err").read_text()


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_cut_off_listing_exits_141(big_table: str, fmt: str) -> None:
    started = time.monotonic()
    status, shown, err = piped(["table", "find", big_table, "--limit", "50000", "-f", fmt], "head -1")
    assert status == 141, err  # was 0: a broken pipe was turned into success
    assert shown == {"csv": "id,pad", "json": "["}.get(fmt, shown)
    assert err == ""  # like any program killed by SIGPIPE: no message
    assert time.monotonic() - started < 60


def test_cut_off_streaming_export_exits_141(big_table: str) -> None:
    status, shown, err = piped(["table", "export", big_table], "head -1")
    assert (status, shown, err) == (141, "id,pad", "")


def test_output_read_to_the_end_exits_0(big_table: str) -> None:
    status, shown, _ = piped(["table", "find", big_table, "--limit", "50000", "-f", "csv"], "tail -1")
    assert (status, shown) == (0, "50000," + "x" * 100)


def test_failed_verify_keeps_its_code_when_the_reader_is_gone(cli: Any, tmp_path: Path,
                                                              made_backup: MadeBackup) -> None:
    root = made_backup.copy_to(tmp_path)
    dump = root / made_backup.id / "postgres" / f"{made_backup.pg_db}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    # the replay: `| head -2` exited 0 with no message; without head, 8
    args = ["backup", "verify", made_backup.id, "--dir", str(root), "-f", "csv"]
    # `true` reads nothing and is gone before dbcli prints: every write meets a closed pipe
    status, _, err = piped(args, "true")
    assert status == 8
    assert err.startswith(f"Error: backup {made_backup.id} failed verification: ")
    status, shown, err = piped(args, "head -2")
    assert status == 8 and shown.startswith("check,subject,ok,detail\n")
    assert err.startswith(f"Error: backup {made_backup.id} failed verification: ")


def test_good_verify_cut_off_exits_141_read_whole_exits_0(tmp_path: Path, made_backup: MadeBackup) -> None:
    root = made_backup.copy_to(tmp_path)
    args = ["backup", "verify", made_backup.id, "--dir", str(root), "-f", "csv"]
    assert piped(args, "true")[0] == 141
    assert piped(args, "cat >/dev/null")[0] == 0
