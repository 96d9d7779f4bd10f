"""`-o FILE` when the file system refuses: read-only, no space, file size limit (issue 15, item 4).

Each ends with its documented code (73: cannot be created, 74: writing failed part way), a message
saying what happened, and nothing half-written left behind. The faults are real: a read-only bind
mount or a directory without write permission, a 64 KiB tmpfs, `ulimit -f`.
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dbcli.errors import NotWritableError, WriteFailedError
from dbcli.fsutil import atomic_write, write_error
from tests.helpers import can_mount, dbcli_in_shell

EXPORT = ["table", "export", "big", "--format", "csv"]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_read_only_directory_exits_73(big_table: str, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: make the directory a read-only mount
        if not can_mount(tmp_path):
            pytest.skip("no mount namespace here")
        done = dbcli_in_shell(f"mount --bind {out} {out}; mount -o remount,bind,ro {out}",
                              [*EXPORT, "-o", str(out / "big.csv")], namespace=True)
        expected = f"Error: cannot write {out / 'big.csv'}: read-only file system\n"
    else:
        out.chmod(0o555)
        done = dbcli_in_shell("true", [*EXPORT, "-o", str(out / "big.csv")])
        expected = f"Error: cannot write {out / 'big.csv'}: permission denied on {out}\n"
    assert (done.returncode, done.stderr) == (73, expected)  # was 1: unexpected OSError
    assert leftovers(out) == []


def test_no_space_left_exits_74_and_leaves_nothing(big_table: str, tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("no mount namespace here")
    small = tmp_path / "small"
    small.mkdir()
    # the listing is checked inside the namespace: the tmpfs is gone once dbcli exits
    target = small / "big.csv"
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "dbcli", *EXPORT, "-o", str(target)])
    done = subprocess.run(["unshare", "-m" if os.geteuid() == 0 else "-rm", "bash", "-c",
                           f"mount -t tmpfs -o size=64k tmpfs {small}; {command}; rc=$?; "
                           f"echo \"rc=$rc files=$(ls -A {small} | tr '\\n' ' ')\""],
                          capture_output=True, text=True, timeout=300, check=False, env={**os.environ})
    assert done.stdout.strip() == "rc=74 files="  # nothing half-written
    assert done.stderr == f"Error: cannot write {target}: no space left on the device\n"


def test_file_size_limit_exits_74_and_leaves_nothing(big_table: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "big.csv"
    target.parent.mkdir()
    # ulimit -f counts 1024-byte blocks in bash: 64 KiB; Python ignores SIGXFSZ, so writes fail with EFBIG
    done = dbcli_in_shell("ulimit -f 64", [*EXPORT, "-o", str(target)])
    assert done.returncode == 74, done.stderr  # was 1: unexpected OSError
    assert done.stderr == (f"Error: cannot write {target}: file too large: the file size limit (ulimit -f) "
                           "was reached\n")
    assert leftovers(target.parent) == []


def test_one_mapping_for_every_atomic_write(tmp_path: Path) -> None:
    # one mapping for every atomic write; backups use write_error / write_errors_mapped too
    with pytest.raises(WriteFailedError, match=r"no space left on the device$"), atomic_write(tmp_path / "x.jsonl"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert leftovers(tmp_path) == []
    refused = write_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "b" / "new")),
                          tmp_path / "b")
    assert isinstance(refused, NotWritableError) and refused.exit_code == 73
    assert refused.message == f"cannot write {tmp_path / 'b'}: permission denied on {tmp_path / 'b'}"
    assert write_error(OSError(errno.ECONNRESET, "reset"), tmp_path) is None


@pytest.mark.parametrize("args", [["--version"], ["config", "show", "--format", "json"]])
def test_full_stdout_exits_74(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "dbcli", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert done.returncode == 74  # was 1: unexpected OSError
    assert "Error: cannot write standard output: no space left on the device\n" in done.stderr
    assert "unexpected" not in done.stderr
