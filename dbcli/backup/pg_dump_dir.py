"""Parallel PostgreSQL backups: ``pg_dump --format=directory -j N`` into a directory of the backup.

The directory's files are complete only when pg_dump ends (its workers write the table files, the
leader writes ``toc.dat`` last), so they are hashed after it, one manifest entry per file. pg_dump
syncs them itself before it exits. Its workers share the snapshot dbcli exported
(``--snapshot``), so the row counts taken in that snapshot are exactly the rows in the dump.

What ``--jobs`` is refused with (exit 2, before anything is written): an encryption key (each file
would need its own encrypted copy: not built) and an object-storage repository (the files would
need a local copy first, then an upload each: not built).
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dbcli.backup import stages
from dbcli.backup.liveness import Watchdog
from dbcli.backup.pg_tools import tool_failure
from dbcli.backup.stages import Progress
from dbcli.child_process import wait_exited
from dbcli.errors import CheckFailedError, UsageError

SUFFIX = ".dir"
FORMAT = "directory"

T = TypeVar("T")


def check_jobs(jobs: int, *, key: bytes | None, local: bool) -> None:
    """UsageError (exit 2) for what ``--jobs`` cannot do; see the module docstring."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    if jobs == 1:
        return
    if key is not None:
        raise UsageError("--jobs cannot be combined with backup encryption (backup.encryption_key): "
                         "drop --jobs or the key")
    if not local:
        raise UsageError("--jobs needs a local backup directory: object storage repositories take "
                         "single-job backups only")


def dump_args(pg_dump: Path, *, jobs: int, compression: int, snapshot: str, dest: Path, conn_arg: str) -> list[str]:
    return [str(pg_dump), "--format=directory", f"--jobs={jobs}", f"--compress={compression}",
            f"--snapshot={snapshot}", f"--file={dest}", "--no-password", conn_arg]


def run(args: list[str], env: dict[str, str], dest: Path, watch: Watchdog, count: Callable[[], T], label: str,
        progress: Progress) -> T:
    """Run pg_dump into the directory ``dest`` while ``count`` runs; count's result once both succeeded."""
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # pg_dump creates only the last level

    def counting() -> T:
        counted = count()
        stages.reached("pg_dump")
        return counted

    code, stderr, counted = run_watched(args, env, watch, lambda _pid: tree_size(dest), counting,
                                        lambda: progress(f"{label}: {tree_size(dest) / 2**20:.1f} MiB written"))
    if code != 0:
        for err_no in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            if os.strerror(err_no) in stderr:
                raise OSError(err_no, os.strerror(err_no), str(dest))  # create maps it as any refused write
        raise tool_failure("pg_dump", code, stderr)
    if not (dest / "toc.dat").is_file():
        raise CheckFailedError(f"pg_dump left no toc.dat in {dest.name}: not a dump")
    return counted


def run_watched(args: list[str], env: dict[str, str], watch: Watchdog, measure: Callable[[int], int],
                during: Callable[[], T], poll: Callable[[], None]) -> tuple[int, str, T]:
    """Run a tool (pg_dump -j, pg_restore -j) guarded by ``watch``, its progress ``measure(pid)``;
    ``during()`` runs meanwhile, ``poll()`` every half second after; (exit code, stderr, during's result).
    Anything raised kills the tool."""
    with tempfile.TemporaryFile() as err:
        proc = watch.guard(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=err, env=env))
        watch.follow(lambda: measure(proc.pid))
        try:
            result = during()
            while (code := wait_exited(proc, 0.5)) is None:
                poll()
            watch.raise_if_fired()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        return code, err.read().decode(errors="replace"), result


def tree_size(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0


def is_directory(pg: dict[str, Any]) -> bool:
    """Whether a manifest's postgres part is a directory-format dump (``backup create --jobs``)."""
    return pg.get("format") == FORMAT


def archive_files(manifest: dict[str, Any], rel: str) -> dict[str, Any]:
    """The manifest's file entries of the archive ``rel``: itself, or the files of its directory."""
    files: dict[str, Any] = manifest.get("files") or {}
    return {k: v for k, v in files.items() if k == rel or k.startswith(rel + "/")}
