"""The backup repository: where backups are listed, locked, written, read and removed.

Two kinds implement it: a local directory (repo_local, the layout store describes) and a prefix in an
S3 bucket (repo_s3). ``backup create``, ``list``, ``verify``, ``restore`` and ``prune`` talk to a
``Repository`` and to the ``Blob`` files of a backup, never to paths or objects directly; repo_open
picks the kind from ``backup.dir`` or ``--dir``.

What both kinds guarantee: a backup exists once its manifest does, and the manifest is written last;
whatever a killed run leaves (a ``.partial-*`` directory, objects under a prefix without a manifest,
unfinished multipart uploads) is never listed, and the next ``create`` or ``prune``, holding the
lock, removes it.
"""

from __future__ import annotations

import datetime as dt
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from dbcli.backup import crypto as backup_crypto
from dbcli.backup.store import BackupInfo, Clock


class Blob(Protocol):
    """One file of a backup, wherever the repository keeps it."""

    @property
    def name(self) -> str:
        """Its base name, for messages."""

    @property
    def local(self) -> Path | None:
        """The file itself when it is on a local disk (a tool may then read it directly)."""

    def open(self) -> AbstractContextManager[IO[bytes]]:
        """Its bytes, read from the start (OSError, or a DbcliError from the storage, if it cannot be read)."""

    def size(self) -> int | None:
        """Its size in bytes; None when it is missing."""


class Sink(Protocol):
    """A new file of a backup being written, in order: ``commit`` makes it whole, ``abort`` drops it."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def flush(self) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BackupFiles(ABC):
    """The files of one backup (complete, or being written)."""

    @abstractmethod
    def blob(self, rel: str) -> Blob:
        """The file at ``rel`` (a path relative to the backup, as the manifest names it)."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every data file there is (not the manifest or the verification record), sorted."""


class Staging(ABC):
    """A backup being written: nothing of it is listed until ``commit`` has written its manifest."""

    files: BackupFiles

    @property
    @abstractmethod
    def local_dir(self) -> Path | None:
        """The directory being written, when the repository is local (pg_dump then writes its file itself)."""

    @abstractmethod
    def create(self, rel: str) -> Sink:
        """A new file at ``rel``, private to the owner."""

    @abstractmethod
    def file_list(self, known: dict[str, str]) -> dict[str, dict[str, Any]]:
        """The manifest's ``files``: size and SHA-256 of every data file (``known``: digests taken on the way)."""

    @abstractmethod
    def commit(self, manifest: dict[str, Any]) -> str:
        """Write the manifest, last: the backup now exists. Returns where it is (a path or a URL)."""

    @abstractmethod
    def fail(self, manifest: dict[str, Any]) -> None:
        """Drop the data and keep ``manifest`` (status failed) as the record of the run, if possible."""

    @abstractmethod
    def discard(self) -> None:
        """Drop everything written (an interrupted run); what cannot be dropped, the next run cleans."""


class Repository(ABC):
    """Backups under one location: a local directory or an S3 prefix."""

    @property
    @abstractmethod
    def location(self) -> str:
        """The directory or URL, as messages and ``backup list`` name it."""

    @abstractmethod
    def locked(self, what: str, clock: Clock) -> AbstractContextManager[None]:
        """Hold the repository's lock for ``what``; LockedError (exit 75) if another run holds it."""

    @abstractmethod
    def clean_leftovers(self) -> list[str]:
        """Remove what killed runs left; call only while holding the lock."""

    @abstractmethod
    def list_backups(self) -> list[BackupInfo]:
        """Every backup (oldest first); leftovers of unfinished runs are not backups."""

    @abstractmethod
    def find_backup(self, backup_id: str | None, *, latest: bool = False, kind: str | None = None) -> BackupInfo:
        """A backup by id (``latest``: the newest complete one, of ``kind`` (logical, physical) when
        given); NotFoundError naming what is there."""

    @abstractmethod
    def new_id(self, profile: str, tag: str | None, when: dt.datetime) -> str:
        """A new backup id that no backup or leftover uses."""

    @abstractmethod
    def begin(self, backup_id: str) -> Staging:
        """Start writing backup ``backup_id``."""

    @abstractmethod
    def files(self, info: BackupInfo) -> BackupFiles:
        """The files of a listed backup."""

    @abstractmethod
    def write_verification(self, info: BackupInfo, record: dict[str, Any]) -> None:
        """Keep the last verification beside the manifest (OSError or DbcliError if refused)."""

    @abstractmethod
    def remove(self, info: BackupInfo) -> None:
        """Remove a whole backup, its manifest first: a crash half-way leaves a leftover, not a backup."""


@contextmanager
def open_plain(blob: Blob, key: bytes | None) -> Iterator[IO[bytes]]:
    """A file's plaintext as a buffered binary stream (decrypted when ``key`` is given)."""
    with blob.open() as raw:
        if key is None:
            yield raw
        else:
            yield io.BufferedReader(backup_crypto.DecryptingReader(raw, key), buffer_size=backup_crypto.CHUNK_SIZE)
