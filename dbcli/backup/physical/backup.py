"""``backup create --physical [--incremental]``: check that the profile can take a base backup, then
take it into the repository, a local directory (base) or an S3 prefix (base_s3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli.backup.physical import base, base_s3, location, server, tools
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.stages import Progress, quiet
from dbcli.backup.store import Clock, utc_now
from dbcli.config.model import Config


def create(cfg: Config, *, root: Path | str | None = None, tag: str | None = None, incremental: bool = False,
           progress: Progress = quiet, clock: Clock = utc_now) -> dict[str, Any]:
    """Write one base backup (full, or incremental on the newest physical backup); its summary."""
    where = location.open_root(cfg, root)
    server.ensure_archiving(cfg, where)
    facts = server.facts(cfg)
    server.check_can_back_up(facts, incremental=incremental)
    tools.client(cfg, "pg_basebackup")
    tools.client(cfg, "pg_verifybackup")  # missing: exit 3 before anything is written
    if isinstance(where, S3Repository):
        return base_s3.create(cfg, where, facts, tag=tag, incremental=incremental, progress=progress, clock=clock)
    return base.create_local(cfg, where, facts, tag=tag, incremental=incremental, progress=progress, clock=clock)
