"""Which repository a backup command works on: ``--dir``, else ``backup.dir``; a path or an s3:// URL."""

from __future__ import annotations

from pathlib import Path

from dbcli.backup.repo import Repository
from dbcli.backup.repo_local import LocalRepository
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.s3_client import is_url
from dbcli.config.model import Config


def open_repository(cfg: Config, override: str | Path | None = None) -> Repository:
    """The repository of ``override`` (``--dir``: a path or an s3:// URL), else of ``backup.dir``."""
    where = override if override is not None else cfg.backup.dir
    if isinstance(where, str) and is_url(where):
        return S3Repository(where, cfg.backup.s3)
    return LocalRepository(Path(where).expanduser())
