"""Private scratch directories for archives that pg_dump or pg_restore must find on a local disk.

A scratch directory is made in the temporary directory (``TMPDIR``, else /tmp) as
``dbcli-scratch-*``, mode 0700, and removed on every exit path of the run that made it. A run killed
with SIGKILL cannot remove its own, and it may hold a decrypted dump: so each run holds a lock
(flock) on its directory while it lives, and the next ``backup create``, ``restore`` or ``verify``
(any run that may make one) first removes the ones no live process holds (``clean_stale``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from types import TracebackType

from dbcli.backup.store import disk_error

PREFIX = "dbcli-scratch-"


class Scratch:
    """A scratch directory made on first use (``path()``) and removed when the block ends."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._fd: int | None = None

    def path(self) -> Path:
        if self._path is None:
            clean_stale()
            try:
                self._path, self._fd = _make()
            except OSError as e:
                raise disk_error(e, Path(tempfile.gettempdir())) from None
        return self._path

    def __enter__(self) -> Scratch:
        # every run that may need one cleans: a restore or verify that needs no scratch directory
        # still removes the decrypted dump a killed ``restore --jobs`` left
        clean_stale()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _make() -> tuple[Path, int]:
    """A new directory, locked: (its path, the descriptor holding the lock)."""
    while True:
        path = Path(tempfile.mkdtemp(prefix=PREFIX))  # mode 0700 whatever the umask
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another run's clean_stale removed it before it was opened

        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return path, fd
        os.close(fd)  # another run's clean_stale removed it before it was locked: make another


def clean_stale() -> list[str]:
    """Remove the scratch directories of this user that no live process holds; their names."""
    removed = []
    base = Path(tempfile.gettempdir())
    with suppress(OSError):
        for entry in base.iterdir():
            if not entry.name.startswith(PREFIX):
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_uid != os.geteuid():
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its run is alive
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
            finally:
                os.close(fd)
    return removed
