"""Private scratch directories for archives that pg_dump or pg_restore must find on a local disk.

A scratch directory is made in the temporary directory (``TMPDIR``, else /tmp) as
``dbcli-scratch-*``, mode 0700, and removed on every exit path of the run that made it. A run killed
with SIGKILL cannot remove its own, and it may hold a decrypted dump: so each run holds a lock
(flock) on its directory while it lives, and the next ``backup create``, ``restore`` or ``verify``
(any run that may make one) first removes the ones no live process holds (``clean_stale``): see
dbcli/tempdirs.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from dbcli.backup.store import disk_error
from dbcli.tempdirs import make_locked, remove_stale

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
    return make_locked(PREFIX)


def clean_stale() -> list[str]:
    """Remove the scratch directories of this user that no live process holds; their names."""
    return remove_stale(PREFIX)
