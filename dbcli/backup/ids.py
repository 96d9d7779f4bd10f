"""Backup ids by file name alone, for shell completion: fast, no manifest read, and none of the
modules a cluster backup needs (psycopg) imported."""

from __future__ import annotations

from pathlib import Path

from dbcli.backup.store import backup_ids, id_time

# the layout of dbcli.backup.physical.cluster (CLUSTER_DIR, BACKUPS), which completion must not import
CLUSTER_BACKUPS = ("cluster", "backups")


def all_ids(root: Path) -> list[str]:
    """The repository's backup ids, a Citus cluster's (``cluster/backups/<id>.json``) included."""
    directory = root.joinpath(*CLUSTER_BACKUPS)
    cluster = sorted(e.stem for e in directory.glob("*.json") if not e.name.startswith(".") and id_time(e.stem)) \
        if directory.is_dir() else []
    return [*backup_ids(root), *cluster]
