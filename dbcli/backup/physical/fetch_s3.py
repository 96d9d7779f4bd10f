"""What a restore from an S3 repository needs on local disk: the base backups of the chain, downloaded
(and checked against their manifest) beside the new data directory; they go when the restore ends.
The restore_command that fetches the WAL from the repository is fetch_command's.
"""

from __future__ import annotations

from pathlib import Path

from dbcli.backup import store as backup_store
from dbcli.backup.physical import base, base_s3
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.stages import Progress
from dbcli.backup.store import BackupInfo


def download_chain(repo: S3Repository, chain: list[BackupInfo], work: Path, progress: Progress) -> list[Path]:
    """Each backup's ``base/`` files into ``work/dl-<n>/``; the directories, full backup first."""
    directories = []
    backup_store.private_dir(work)
    for n, info in enumerate(chain):
        progress(f"downloading {info.id}")
        directory = backup_store.private_dir(work / f"dl-{n}")
        for rel in sorted((info.manifest or {}).get("files") or {}):
            if not rel.startswith(f"{base.BASE}/") or "/" in rel[len(base.BASE) + 1:]:
                continue
            base_s3.download(repo, info, rel, directory / rel[len(base.BASE) + 1:])
        directories.append(directory)
    return directories

