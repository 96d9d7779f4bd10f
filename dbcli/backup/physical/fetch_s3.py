"""What a restore from an S3 repository needs on local disk: the base backups of the chain, downloaded
(and checked against their manifest) beside the new data directory, and a restore_command that runs
``dbcli wal fetch`` against the repository.

The restore_command reads a config file written for the restore (the S3 settings, no secret): the
access key and secret reach it through the environment of the server dbcli starts for the recovery,
never through a command line or a file. The file and the downloads go when the restore ends.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

from dbcli.backup import store as backup_store
from dbcli.backup.physical import base, base_s3, location, tools
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.stages import Progress
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config

KEY_ENV = "DBCLI_RESTORE_S3_KEY"
SECRET_ENV = "DBCLI_RESTORE_S3_SECRET"


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


def restore_command(cfg: Config, repo: S3Repository, work: Path,
                    owner: pwd.struct_passwd | None) -> tuple[str, dict[str, str]]:
    """The restore_command and the environment the recovering server needs for it."""
    s3 = cfg.backup.s3
    conf_dir = backup_store.private_dir(work / "conf")
    settings: dict[str, object] = {"endpoint_url": s3.endpoint_url, "region": s3.region,
                                   "addressing_style": s3.addressing_style, "timeout": s3.timeout}
    env = dict(os.environ)
    if s3.access_key_id is not None:
        settings["access_key_id"] = f"${{{KEY_ENV}}}"
        env[KEY_ENV] = s3.access_key_id
    if s3.secret_access_key is not None:
        settings["secret_access_key"] = f"${{{SECRET_ENV}}}"
        env[SECRET_ENV] = s3.secret_access_key
    config = conf_dir / "restore.yaml"
    with backup_store.open_private(config) as fh:  # JSON is YAML: no yaml import for one file
        fh.write(json.dumps({"data_dir": str(conf_dir), "backup": {"dir": repo.location, "s3": settings}}).encode())
    tools.give_to(conf_dir, owner)
    return location.dbcli_command(config, None, repo, "fetch", "%f", "%p"), env
