"""Which backups an incremental backup depends on, for retention: a kept backup keeps its whole chain
(its full backup and every incremental before it), and the WAL archive keeps what the oldest physical
backup needs. Manifests only: no server, no PostgreSQL tools (``backup prune`` stays light)."""

from __future__ import annotations

from typing import Any

from dbcli.backup.physical import location
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.repo import Repository
from dbcli.backup.store import BackupInfo

KIND = "physical"


def is_physical(manifest: dict[str, Any] | None) -> bool:
    return bool(manifest) and (manifest or {}).get("kind") == KIND


def physical_backups(root: Root, backups: list[BackupInfo] | None = None) -> list[BackupInfo]:
    """Complete physical backups, oldest first (of ``backups`` when the caller has listed them)."""
    found = location.all_backups(root) if backups is None else backups
    return [b for b in found if b.status == "ok" and is_physical(b.manifest)]


def depends_on(manifest: dict[str, Any] | None) -> list[str]:
    """The ids a restore of this backup also needs (full backup first); none for a full or logical one."""
    if manifest is None or not is_physical(manifest):
        return []
    return [str(i) for i in (manifest.get(KIND) or {}).get("chain") or []]


def needed_by(backups: list[BackupInfo], kept: set[str]) -> dict[str, str]:
    """{id: id of a kept backup that needs it} for every backup a kept one depends on."""
    by_id = {b.id: b for b in backups}
    needed: dict[str, str] = {}
    for b in backups:
        if b.id in kept:
            for parent in depends_on(b.manifest):
                if parent in by_id:
                    needed.setdefault(parent, b.id)
    return needed


def prune_wal(repo: Root | Repository) -> int:
    """Remove archived WAL older than what the oldest complete physical backup needs; how many files.
    Without a physical backup nothing is removed."""
    root = location.of_repository(repo)
    starts = [str((b.manifest or {})[KIND]["start_wal"]) for b in physical_backups(root)]
    if not starts:
        return 0
    return location.prune_before(root, min(starts, key=lambda name: wal_archive.segment_number(name)[1]))
