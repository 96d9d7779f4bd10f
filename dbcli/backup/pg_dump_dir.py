"""Parallel PostgreSQL backups: ``pg_dump --format=directory -j N`` into a directory of the backup.

The directory's files are complete only when pg_dump ends (its workers write the table files, the
leader writes ``toc.dat`` last), so they are hashed after it, one manifest entry per file. pg_dump
syncs them itself before it exits. Its workers share the snapshot dbcli exported
(``--snapshot``), so the row counts taken in that snapshot are exactly the rows in the dump.

Into a local directory without encryption, pg_dump writes the backup's own files. Encrypted, or into
object storage, it writes into a private scratch directory first, whose files are then stored in
the backup one by one (archive_transfer): that needs as much local space as the dump, in TMPDIR.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any, TypeVar

from dbcli.backup import stages
from dbcli.backup.liveness import Watchdog
from dbcli.backup.pg_tools import tool_failure
from dbcli.backup.stages import Progress
from dbcli.child_process import die_with_parent, wait_exited
from dbcli.errors import CheckFailedError, UsageError

SUFFIX = ".dir"
FORMAT = "directory"

T = TypeVar("T")


def check_jobs(jobs: int) -> None:
    """UsageError (exit 2) for a number of jobs pg_dump cannot take."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")


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
                during: Callable[[], T], poll: Callable[[], None],
                stderr: IO[bytes] | None = None) -> tuple[int, str, T]:
    """Run a tool (pg_dump -j, pg_restore -j) guarded by ``watch``, its progress ``measure(pid)``;
    ``during()`` runs meanwhile, ``poll()`` every half second after; (exit code, stderr, during's result).
    Anything raised kills the tool. ``stderr``: a file of the caller's for the tool's stderr (poll may read it)."""
    with tempfile.TemporaryFile() if stderr is None else nullcontext(stderr) as err:
        proc = watch.guard(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=err, env=env, preexec_fn=die_with_parent()))
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
