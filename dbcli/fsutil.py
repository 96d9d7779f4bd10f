"""Atomic file writes: temp file in the target directory, fsync, rename; never a half file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dbcli.errors import InvalidInputError


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, private: bool = False,
                 encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """Write to ``path`` atomically. On any exception the target is left untouched."""
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        # like a shell redirection: a mistyped directory is an error, not a new directory tree
        raise InvalidInputError(f"cannot write {path}: it is a directory" if target.is_dir()
                                else f"cannot write {path}: no directory {target.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~_umask())
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory: so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
