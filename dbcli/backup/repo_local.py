"""The repository as a local directory, in the layout store describes (flock'ed ``.lock``,
``.partial-<id>`` renamed to ``<id>`` once its manifest is on disk)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from dbcli.backup import stages
from dbcli.backup import store as backup_store
from dbcli.backup.repo import BackupFiles, Repository, Staging
from dbcli.backup.store import BackupInfo, Clock
from dbcli.errors import DbcliError
from dbcli.fsutil import fsync_path


class LocalBlob:
    """A file on a local disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def local(self) -> Path:
        return self.path

    def open(self) -> IO[bytes]:
        return open(self.path, "rb")

    def size(self) -> int | None:
        return self.path.stat().st_size if self.path.is_file() else None


class LocalSink:
    """A new private file; ``commit`` syncs and closes it."""

    def __init__(self, path: Path) -> None:
        self.fh = backup_store.open_private(path)
        # the file's own methods, not wrappers: mongo writes a call per document
        self.write: Callable[[bytes | bytearray | memoryview], int] = self.fh.write
        self.flush: Callable[[], None] = self.fh.flush

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()

    def abort(self) -> None:
        self.fh.close()


class LocalFiles(BackupFiles):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def blob(self, rel: str) -> LocalBlob:
        return LocalBlob(self.directory / rel)

    def names(self) -> list[str]:
        return [str(p.relative_to(self.directory)) for p in backup_store.data_files(self.directory)]


class LocalStaging(Staging):
    """``<root>/.partial-<id>``, renamed to ``<root>/<id>`` by ``commit``."""

    def __init__(self, root: Path, backup_id: str) -> None:
        self.root, self.id = root, backup_id
        try:
            self.dir = backup_store.private_dir(root / f"{backup_store.PARTIAL}{backup_id}")
        except OSError as e:
            raise backup_store.disk_error(e, root) from None
        self.files = LocalFiles(self.dir)

    @property
    def local_dir(self) -> Path:
        return self.dir

    def create(self, rel: str) -> LocalSink:
        return LocalSink(self.dir / rel)

    def file_list(self, known: dict[str, str]) -> dict[str, dict[str, Any]]:
        return {str(p.relative_to(self.dir)): {"size": p.stat().st_size,
                                               "sha256": known.get(str(p.relative_to(self.dir)))
                                               or backup_store.sha256_file(p)}
                for p in backup_store.data_files(self.dir)}

    def commit(self, manifest: dict[str, Any]) -> str:
        backup_store.write_manifest(self.dir, manifest)
        for d in [self.dir, *(p for p in self.dir.rglob("*") if p.is_dir())]:
            fsync_path(d)
        stages.reached("manifest")
        os.replace(self.dir, self.root / self.id)
        fsync_path(self.root)
        return str(self.root / self.id)

    def fail(self, manifest: dict[str, Any]) -> None:
        try:
            for child in self.dir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            backup_store.write_manifest(self.dir, manifest)
            os.replace(self.dir, self.root / self.id)
        except (OSError, DbcliError):  # atomic_write maps a refused write to a DbcliError
            shutil.rmtree(self.dir, ignore_errors=True)  # the next run cleans whatever is left

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class LocalRepository(Repository):
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def locked(self, what: str, clock: Clock) -> AbstractContextManager[None]:
        return backup_store.locked(self.root, what, clock)

    def clean_leftovers(self) -> list[str]:
        return backup_store.clean_leftovers(self.root)

    def list_backups(self) -> list[BackupInfo]:
        return backup_store.list_backups(self.root)

    def find_backup(self, backup_id: str | None, *, latest: bool = False, kind: str | None = None) -> BackupInfo:
        return backup_store.find_backup(self.root, backup_id, latest=latest, kind=kind)

    def new_id(self, profile: str, tag: str | None, when: dt.datetime) -> str:
        return backup_store.new_id(profile, tag, when, self.root)

    def begin(self, backup_id: str) -> LocalStaging:
        return LocalStaging(self.root, backup_id)

    def files(self, info: BackupInfo) -> LocalFiles:
        assert info.path is not None
        return LocalFiles(info.path)

    def write_verification(self, info: BackupInfo, record: dict[str, Any]) -> None:
        assert info.path is not None
        backup_store.write_verification(info.path, record)

    def remove(self, info: BackupInfo) -> None:
        assert info.path is not None
        backup_store.remove_backup(info.path)
