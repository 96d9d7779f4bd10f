"""Files written safely: atomic writes (temp file, fsync, rename; never a half file) and the one
mapping of the operating system's write failures to dbcli errors and exit codes."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dbcli.errors import DbcliError, InvalidInputError, NotWritableError, WriteFailedError

# errno -> (what happened, error class); the exit codes are in docs/output-and-errors.md
_WRITE_FAILURES: dict[int, tuple[str, type[DbcliError]]] = {
    errno.EACCES: ("permission denied", NotWritableError),
    errno.EPERM: ("permission denied", NotWritableError),
    errno.EROFS: ("read-only file system", NotWritableError),
    errno.ENOSPC: ("no space left on the device", WriteFailedError),
    errno.EDQUOT: ("disk quota exceeded", WriteFailedError),
    errno.EFBIG: ("file too large: the file size limit (ulimit -f) was reached", WriteFailedError),
    errno.EIO: ("input/output error", WriteFailedError),
}


def write_error(error: OSError, path: str | Path) -> DbcliError | None:
    """The dbcli error for a failed write of ``path`` (exit 73 when it cannot be created, 74 when
    writing failed part way), or None when ``error`` is not one of the file system's refusals."""
    known = _WRITE_FAILURES.get(error.errno or 0)
    if known is None:
        return None
    what, kind = known
    if kind is NotWritableError and error.errno != errno.EROFS:
        # the directory the file (or the new directory) would go in: that is what to fix
        what = f"{what} on {Path(error.filename or path).parent}"
    return kind(f"cannot write {path}: {what}")


@contextmanager
def write_errors_mapped(path: str | Path) -> Iterator[None]:
    """Inside this block, a write failure of :func:`write_error`'s kinds becomes its dbcli error."""
    try:
        yield
    except OSError as e:
        mapped = write_error(e, path)
        if mapped is None:
            raise
        raise mapped from e


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, private: bool = False,
                 encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """Write to ``path`` atomically. On any exception the target is left untouched; a write the
    file system refuses (read-only, no space, file too large) exits 73 or 74, see :func:`write_error`."""
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        # like a shell redirection: a mistyped directory is an error, not a new directory tree
        raise InvalidInputError(f"cannot write {path}: it is a directory" if target.is_dir()
                                else f"cannot write {path}: no directory {target.parent}")
    with write_errors_mapped(path):
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


def append_file(source: IO[bytes], sink: IO[bytes]) -> None:
    """Append all of ``source`` (a file, read from its start) to ``sink``.

    The kernel copies (``sendfile``) where both ends are file descriptors, so the bytes do not
    pass through Python; otherwise, or where the kernel refuses, in 1 MiB reads and writes."""
    source.seek(0)
    try:
        out_fd, in_fd = sink.fileno(), source.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        out_fd = in_fd = -1
    if out_fd >= 0:
        sink.flush()
        size, offset = os.fstat(in_fd).st_size, 0
        try:
            while offset < size:
                sent = os.sendfile(out_fd, in_fd, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        except OSError as e:
            if offset or e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
        if offset:
            return
    shutil.copyfileobj(source, sink, 1 << 20)


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
