"""Where physical backups and the WAL archive live: a local directory (a ``Path``) or an S3 repository
(``S3Repository``). The functions here pick the local or the S3 way of listing, archiving and fetching,
so the rest of the package asks one question and not two."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from dbcli.backup import store as backup_store
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical import wal_crypto, wal_s3
from dbcli.backup.repo import Repository
from dbcli.backup.repo_local import LocalRepository
from dbcli.backup.repo_open import open_repository
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config
from dbcli.errors import ConfigError

Root = Path | S3Repository


def open_root(cfg: Config, root: Path | str | None = None) -> Root:
    """``root`` (``--dir``: a path or an s3:// URL), else ``backup.dir``."""
    return of_repository(open_repository(cfg, root))


def of_repository(repo: Repository | Root) -> Root:
    """The repository as this package addresses it: its directory when local."""
    if isinstance(repo, Path | S3Repository):
        return repo
    return repo.root if isinstance(repo, LocalRepository) else Path(repo.location)


def text(root: Root) -> str:
    return root.location if isinstance(root, S3Repository) else str(root)


def wal_text(root: Root) -> str:
    return wal_s3.wal_location(root).url if isinstance(root, S3Repository) else str(wal_archive.wal_dir(root))


def all_backups(root: Root) -> list[BackupInfo]:
    return root.list_backups() if isinstance(root, S3Repository) else backup_store.list_backups(root)


def find_backup(root: Root, backup_id: str) -> BackupInfo:
    return root.find_backup(backup_id) if isinstance(root, S3Repository) else backup_store.find_backup(root, backup_id)


def segments(root: Root) -> list[str]:
    return wal_s3.segments(root) if isinstance(root, S3Repository) else wal_archive.segments(root)


def archive(root: Root, source: Path, name: str, key: bytes | None = None) -> str:
    """Archive one WAL file; encrypted when ``key`` (``backup.encryption_key``) is given."""
    if isinstance(root, S3Repository):
        return wal_s3.archive(root, source, name, key)
    return wal_archive.archive(root, source, name, key)


def fetch(root: Root, name: str, dest: Path, key: bytes | None = None) -> None:
    """Fetch one archived WAL file, decrypting it (with ``key``) when it is encrypted."""
    if isinstance(root, S3Repository):
        wal_s3.fetch(root, name, dest, key)
    else:
        wal_archive.fetch(root, name, dest, key)


def check_wal_key(root: Root, key: bytes | None) -> None:
    """ConfigError (exit 3) when the newest archived segment is encrypted and ``key`` is missing or
    another one: said before a restore starts, not by its recovery half-way."""
    names = segments(root)
    if not names:
        return
    sealed = (wal_s3.header(root, names[-1]) if isinstance(root, S3Repository)
              else wal_crypto.read_header(wal_archive.wal_dir(root) / names[-1]))
    if sealed is not None:
        wal_crypto.key_for(sealed, key, names[-1])


def prune_before(root: Root, first_needed: str) -> int:
    if isinstance(root, S3Repository):
        return wal_s3.prune_before(root, first_needed)
    return wal_archive.prune_before(root, first_needed)


def dbcli_command(config: Path | None, profile: str | None, root: Root, *args: str) -> str:
    """``dbcli [--config F] [--profile P] wal ARGS --dir ROOT`` with this Python, as a server runs it.

    For an S3 repository the command reads the S3 settings (and the secret) from the config file,
    never from its command line: the server's user must be able to read that file."""
    command = [sys.executable, "-m", "dbcli"]
    if config is not None:
        command += ["--config", str(config.resolve())]
    if profile is not None:
        command += ["--profile", profile]
    where = root.location if isinstance(root, S3Repository) else str(root.resolve())
    quoted = " ".join(shlex.quote(part) for part in [*command, "wal", args[0], "--dir", where])
    return f"{quoted} {' '.join(args[1:])}"


def archive_command(cfg: Config | None, root: Root) -> str:
    """The archive_command that runs ``dbcli wal archive`` into ``root``: with the profile's config
    file when the repository is on S3 or the archive is encrypted (the key is in that file)."""
    encrypted = cfg is not None and cfg.backup.encryption_key is not None
    if not isinstance(root, S3Repository) and not encrypted:
        return wal_archive.archive_command(root)
    source = Path(cfg.source) if cfg is not None and cfg.source is not None else None
    if encrypted and source is None:
        raise ConfigError("backup.encryption_key is set but comes from no config file: the archive_command "
                          "reads the key from one", hint="put backup.encryption_key in a config file")
    return dbcli_command(source, cfg.profile if source is not None and cfg is not None else None, root,
                         "archive", "%p", "%f")
