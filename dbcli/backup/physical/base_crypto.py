"""Encrypted base backups (``backup.encryption_key`` set).

pg_basebackup writes into a private staging directory; once pg_verifybackup has checked that plain
copy, each file (base.tar(.gz), pg_wal.tar, other tablespaces' tars, backup_manifest) goes into the
repository encrypted as ``<name>.enc`` (the stream format of dbcli.backup.crypto: one chunk in
memory at a time), and dbcli's manifest records the key id as for logical backups. Reading an
encrypted backup (restore, verify, the previous manifest of an incremental one) decrypts again:
streamed into tar, or into a 0700 scratch directory that is removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup import store as backup_store
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError

SUFFIX = backup_crypto.SUFFIX
MANIFEST = "backup_manifest"  # pg_basebackup's own manifest


def record(key: bytes | None) -> dict[str, str] | None:
    """The manifest's ``encryption`` entry (None: not encrypted), as logical backups write it."""
    return {"algorithm": backup_crypto.ALGORITHM, "key_id": backup_crypto.key_id(key)} if key else None


def seal_file(path: Path, sink: Any, key: bytes) -> None:
    """``path`` encrypted into ``sink`` (a file or a repository sink), one chunk at a time."""
    writer = backup_crypto.EncryptingWriter(sink, key)
    with open(path, "rb") as src:
        while chunk := src.read(backup_crypto.CHUNK_SIZE):
            writer.write(chunk)
    writer.close()  # the final chunk; the sink stays open


def seal_tree(staged: Path, into: Path, key: bytes) -> None:
    """Every file under ``staged`` encrypted to the same place under ``into`` (with ``.enc``), fsynced."""
    for path in backup_store.data_files(staged):
        dest = into / f"{path.relative_to(staged)}{SUFFIX}"
        with backup_store.open_private(dest) as out:
            seal_file(path, out, key)
            out.flush()
            os.fsync(out.fileno())


def is_sealed(directory: Path) -> bool:
    """Whether the base backup files in ``directory`` are encrypted."""
    return (directory / f"{MANIFEST}{SUFFIX}").exists()


def key_of(cfg: Config, info: BackupInfo) -> bytes | None:
    """The key that decrypts ``info`` (None: not encrypted); ConfigError (exit 3) when it is missing
    or another key."""
    return backup_crypto.manifest_key(cfg, info.manifest or {"id": info.id})


def open_plain(path: Path, key: bytes | None) -> IO[bytes]:
    """A file of a base backup as plain bytes: decrypted when it is an ``.enc`` one."""
    return backup_crypto.open_plain(path, key if path.name.endswith(SUFFIX) else None)


def decrypt_file(info: BackupInfo, source: Path, dest: Path, key: bytes | None) -> Path:
    """``source`` decrypted into the new private file ``dest``; CheckFailedError when it is damaged."""
    try:
        with open_plain(source, key) as src, backup_store.open_private(dest) as out:
            shutil.copyfileobj(src, out, backup_crypto.CHUNK_SIZE)
    except backup_crypto.DecryptError as e:
        raise CheckFailedError(f"backup {info.id} is damaged: {source.name}: {e}") from None
    return dest


def plain_copy(info: BackupInfo, directory: Path, into: Path, key: bytes | None) -> Path:
    """``directory`` (a base backup's files) as plain files in ``into``, for pg_verifybackup."""
    backup_store.private_dir(into)
    for path in sorted(directory.iterdir()):
        if path.is_file():
            decrypt_file(info, path, into / path.name.removesuffix(SUFFIX), key)
    return into


def plain_manifest(info: BackupInfo, directory: Path, scratch: Path, key: bytes | None) -> Path:
    """The plain backup_manifest of the base backup in ``directory`` (decrypted into ``scratch``)."""
    if not is_sealed(directory):
        return directory / MANIFEST
    return decrypt_file(info, directory / f"{MANIFEST}{SUFFIX}", scratch / f"{info.id}.{MANIFEST}", key)
