"""Archives between the repository and a scratch directory, when pg_dump or pg_restore cannot reach
them in place: a directory archive (``backup create --jobs``) that is encrypted or in object storage,
and any archive ``pg_restore -j`` reads (it needs a plain local file or directory to seek in).

- ``publish`` (create): pg_dump -j has written the archive into a scratch directory and it has been
  checked there; each of its files is then stored in the backup, encrypted as any single-file dump
  is (each file its own ``.enc``, see crypto) when there is a key, a few files at a time. The caller
  writes the manifest last, with the SHA-256 of every stored file.
- ``fetch`` (restore, verify): each stored file of the archive is read once (downloaded, decrypted)
  into a scratch directory, its stored bytes hashed on the way and compared with the manifest;
  pg_restore reads the archive only once every file matched.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup import stages
from dbcli.backup.repo import BackupFiles, Sink, Staging
from dbcli.backup.s3_io import PART_SIZES
from dbcli.backup.stages import Progress
from dbcli.backup.store import disk_error, open_private
from dbcli.backup.threads import for_each

# files stored at once. An upload of a file past one part buffers up to 40 MiB (s3_io): those go one
# at a time, which keeps a backup under its memory budget (150 MB RSS; each already has several
# parts in flight); smaller files (one PUT each), and any file into a local directory, two at a time
THREADS = 2
BLOCK = 1 << 20

Check = Callable[[str, str, bool, str], None]  # (check, subject, ok, detail), as Verification.add


def stored_name(name: str, key: bytes | None) -> str:
    """The name a file of the archive is stored under."""
    return name + (backup_crypto.SUFFIX if key else "")


def plain_name(rel: str, key: bytes | None) -> str:
    """The name pg_restore knows a stored file by."""
    return rel.removesuffix(backup_crypto.SUFFIX) if key else rel


class _Hashing:
    """A sink that hashes what goes into it: the stored bytes, which the manifest lists."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self.hash.update(data)
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


def publish(directory: Path, staging: Staging, rel: str, key: bytes | None, *, progress: Progress) -> dict[str, str]:
    """Store every file of the local archive ``directory`` as ``<rel>/<name>`` in the backup, the
    largest first; the SHA-256 of each stored file by its path in the backup. The first error stops
    the rest and is raised."""
    todo = sorted((p for p in directory.iterdir() if p.is_file()), key=lambda p: -p.stat().st_size)
    digests: dict[str, str] = {}
    lock = threading.Lock()

    def store(path: Path, stop: threading.Event) -> None:
        target = f"{rel}/{stored_name(path.name, key)}"
        sink = staging.create(target)
        try:
            hashing = _Hashing(sink)
            writer: backup_crypto.EncryptingWriter | _Hashing = (
                backup_crypto.EncryptingWriter(hashing, key) if key else hashing)  # type: ignore[arg-type]
            with open(path, "rb") as src:
                while (block := src.read(BLOCK)) and not stop.is_set():
                    writer.write(block)
            if stop.is_set():
                raise InterruptedError("stopped: another file failed")
            if isinstance(writer, backup_crypto.EncryptingWriter):
                writer.close()  # seals the final chunk
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        with lock:
            digests[target] = hashing.hash.hexdigest()
            done = len(digests)
        progress(f"postgres: stored {done} of {len(todo)} files")
        if done == 1:
            stages.reached("upload")

    large = [p for p in todo if p.stat().st_size > PART_SIZES[0][1]] if staging.local_dir is None else []
    for_each(large, store, threads=1)
    for_each([p for p in todo if p not in large], store, threads=THREADS)
    return digests


class _HashingReader:
    """Reads a stored file, hashing and counting what it read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(BLOCK):
            pass


def fetch(files: BackupFiles, listed: dict[str, dict[str, Any]], rel: str, key: bytes | None, dest: Path,
          check: Check, *, progress: Progress) -> Path:
    """Read the archive ``rel`` (a file, or a directory: ``listed`` holds its files' manifest entries)
    into ``dest``, decrypted; each file's size and SHA-256 checked, as ``check("checksum", file, ok,
    detail)``. Returns the local archive, complete only when every check passed."""
    parent = rel.rpartition("/")[0]
    for n, (name, meta) in enumerate(sorted(listed.items()), 1):
        progress(f"postgres: reading {n} of {len(listed)} files of {Path(rel).name}")
        local = dest / plain_name(name[len(parent):].lstrip("/"), key)
        problem = _fetch_one(files, name, meta, key, local)
        check("checksum", name, problem is None, problem or "")
    return dest / plain_name(rel[len(parent):].lstrip("/"), key)


def _fetch_one(files: BackupFiles, name: str, meta: dict[str, Any], key: bytes | None, local: Path) -> str | None:
    """Copy one stored file to ``local`` (decrypting it); what is wrong with it, or None."""
    failed = None
    try:
        with files.blob(name).open() as raw, open_private(local) as out:
            reader = _HashingReader(raw)
            try:
                if key is None:
                    while block := reader.read(BLOCK):
                        out.write(block)
                else:
                    for chunk in backup_crypto.decrypt_chunks(reader, key):
                        out.write(chunk)
                    reader.drain()  # bytes after the final chunk: the checksum tells
            except backup_crypto.DecryptError as e:
                reader.drain()
                failed = f"cannot decrypt: {e}"
    except FileNotFoundError as e:
        if Path(e.filename or "") == local:
            raise disk_error(e, local) from None
        return "missing"
    except OSError as e:  # the scratch directory's disk, not the backup: exit 73/74
        raise disk_error(e, local) from None
    if reader.size != meta["size"]:
        return f"size {reader.size}, manifest says {meta['size']}"
    if reader.hash.hexdigest() != meta["sha256"]:
        return "checksum mismatch"
    return failed
