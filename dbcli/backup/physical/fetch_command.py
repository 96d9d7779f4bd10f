"""The restore_command of a restored server: how it fetches archived WAL from the repository.

A plain local archive is read with ``cp`` (no Python start per segment). An S3 repository, or an
encrypted archive, needs ``dbcli wal fetch``: it reads a config file written for the restore (the S3
settings, the repository; no secret). The S3 access key and secret, and ``backup.encryption_key``,
reach it through the environment of the server dbcli starts for the recovery, never through a command
line or a file. The file goes when the restore ends.

A segment that is there but cannot be read (damaged, another key: ``wal fetch`` exits 8 or 3) must
stop the recovery, not end it: PostgreSQL takes any other failure for "not archived" and would
promote at that point. An exit status above 125 makes it abort instead.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
from pathlib import Path

from dbcli.backup import store as backup_store
from dbcli.backup.physical import location, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.repo_s3 import S3Repository
from dbcli.config.model import Config

KEY_ENV = "DBCLI_RESTORE_S3_KEY"
SECRET_ENV = "DBCLI_RESTORE_S3_SECRET"
BACKUP_KEY_ENV = "DBCLI_RESTORE_BACKUP_KEY"
ABORT = 255  # > 125: PostgreSQL aborts the recovery (see the module docstring)


def restore_command(cfg: Config, root: Root, work: Path,
                    owner: pwd.struct_passwd | None) -> tuple[str, dict[str, str] | None]:
    """The restore_command and the environment the recovering server needs for it (None: dbcli's)."""
    key = cfg.backup.encryption_key
    if not isinstance(root, S3Repository) and key is None:
        return wal_archive.restore_command(root), None
    env = dict(os.environ)
    backup: dict[str, object] = {"dir": root.location if isinstance(root, S3Repository) else str(root.resolve())}
    if isinstance(root, S3Repository):
        s3 = cfg.backup.s3
        settings: dict[str, object] = {"endpoint_url": s3.endpoint_url, "region": s3.region,
                                       "addressing_style": s3.addressing_style, "timeout": s3.timeout}
        if s3.access_key_id is not None:
            settings["access_key_id"] = f"${{{KEY_ENV}}}"
            env[KEY_ENV] = s3.access_key_id
        if s3.secret_access_key is not None:
            settings["secret_access_key"] = f"${{{SECRET_ENV}}}"
            env[SECRET_ENV] = s3.secret_access_key
        backup["s3"] = settings
    if key is not None:
        backup["encryption_key"] = f"${{{BACKUP_KEY_ENV}}}"
        env[BACKUP_KEY_ENV] = base64.b64encode(key).decode("ascii")
    conf_dir = backup_store.private_dir(work / "conf")
    config = conf_dir / "restore.yaml"
    with backup_store.open_private(config) as fh:  # JSON is YAML: no yaml import for one file
        fh.write(json.dumps({"data_dir": str(conf_dir), "backup": backup}).encode())
    tools.give_to(conf_dir, owner)
    fetch = location.dbcli_command(config, None, root, "fetch", "%f", "%p")
    return f"{fetch} || {{ c=$?; [ $c -eq 3 ] || [ $c -eq 8 ] && exit {ABORT}; exit $c; }}", env
