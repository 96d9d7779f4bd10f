"""Private temporary directories that the next run removes if the run that made one was killed.

A directory is made in the temporary directory (``TMPDIR``, else /tmp) as ``<prefix>*``, mode 0700,
and removed on every exit path of the run that made it. A run killed with SIGKILL cannot remove its
own, and it may hold a secret (a passfile, a decrypted dump): so each run holds a lock (flock) on its
directory while it lives, and the next run that makes one with the same prefix first removes those no
live process holds (``remove_stale``). Used for backup scratch directories (``dbcli-scratch-``), the
passfile of the PostgreSQL client tools (``dbcli-pgpass-``) and the socket directory of a recovering
server (``dbcli-rs-``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def make_locked(prefix: str) -> tuple[Path, int]:
    """A new directory, locked: (its path, the descriptor holding the lock; close it after removing it)."""
    while True:
        path = Path(tempfile.mkdtemp(prefix=prefix))  # mode 0700 whatever the umask
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another run's remove_stale removed it before it was opened

        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return path, fd
        os.close(fd)  # another run's remove_stale removed it before it was locked: make another


def remove_stale(prefix: str, *, given_away: bool = False) -> list[str]:
    """Remove this user's ``<prefix>*`` directories that no live process holds; their names.
    ``given_away``: root's runs give theirs to another user (a socket directory to the server's
    user), so as root those of any owner go."""
    removed = []
    base = Path(tempfile.gettempdir())
    with suppress(OSError):
        for entry in base.iterdir():
            if not entry.name.startswith(prefix):
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_uid != os.geteuid() and not (given_away and os.geteuid() == 0):
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


@contextmanager
def locked_tempdir(prefix: str) -> Iterator[Path]:
    """A new locked directory for the block (the stale ones of killed runs removed first); removed after."""
    remove_stale(prefix)
    path, fd = make_locked(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
