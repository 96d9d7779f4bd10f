"""``backup prune`` of a Citus cluster's physical backups (``<repository>/cluster/``), as whole units.

retention.py decides with the same rules as for a single server, over the cluster backups alone (a
cluster backup is not comparable with a logical one). A removed cluster backup loses, in this order,
its manifest (what makes it exist: ``backup list`` and restore see only manifests), then its node
backups, then each node's WAL older than the oldest kept backup's start on that node, then the restore
points before the oldest kept backup's own point (no kept backup can recover to them). A prune killed
part way thus never leaves a listed backup without its parts; the next prune removes the node backups
no manifest names any more (only a cluster ``backup create``, which holds the same lock, writes
them). Manifests only, and file names: no server is needed.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

from dbcli.backup import store as backup_store
from dbcli.backup.physical import cluster
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.store import BackupInfo, Clock, ManifestError, UnsafeEntryError
from dbcli.fsutil import atomic_write, fsync_path

NODE_NAME = re.compile(r"^(coordinator|worker-[0-9]+)$")


def present(root: Path) -> bool:
    return (cluster.cluster_root(root) / cluster.BACKUPS).is_dir()


def backups(root: Path) -> list[BackupInfo]:
    """The cluster backups as retention sees them: unreadable manifests, or ones naming a path outside
    their node's area, are left alone like a single server's."""
    directory = cluster.cluster_root(root) / cluster.BACKUPS
    found = [backup_store.backup_info(path.stem, None, partial(read_manifest, path),
                                      cluster.read_verification(root, path.stem))
             for path in sorted(directory.glob("*.json")) if not path.name.startswith(".")]
    return backup_store.sorted_backups(found)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ManifestError(f"unreadable cluster manifest {path.name}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise ManifestError(f"cluster manifest {path.name} lists no nodes")
    for name, part in data["nodes"].items():
        # prune deletes <cluster>/<node>/<backup>: a name that leaves it is tampering, never removed
        backup = str(part.get("backup")) if isinstance(part, dict) else ""
        if not NODE_NAME.match(str(name)) or backup_store.id_time(backup) is None or "/" in backup \
                or backup.startswith("."):
            raise UnsafeEntryError(f"cluster manifest {path.name} names a path outside the cluster: {name}/{backup}")
    return data


def locked(root: Path, clock: Clock) -> Any:
    """The lock cluster ``backup create`` and ``backup restore-point`` hold."""
    return backup_store.locked(cluster.cluster_root(root), "backup prune (cluster)", clock)


def apply(root: Path, kept: list[BackupInfo], doomed: list[BackupInfo]) -> dict[str, int]:
    """Remove ``doomed`` cluster backups and what no ``kept`` one needs; how much of each. The caller
    holds ``locked``."""
    area = cluster.cluster_root(root)
    nodes = sorted(p.name for p in area.iterdir() if p.is_dir() and NODE_NAME.match(p.name))
    for name in nodes:  # what killed creates and prunes left (.partial-*, .deleting-*)
        backup_store.clean_leftovers(cluster.node_root(root, name))
    for info in doomed:
        cluster.backup_path(root, info.id).unlink(missing_ok=True)
        (area / cluster.BACKUPS / cluster.VERIFIED / f"{info.id}.json").unlink(missing_ok=True)
    fsync_path(area / cluster.BACKUPS)
    removed = {"cluster_backups": len(doomed), "node_backups": 0, "wal_segments": 0, "restore_points": 0}
    if any(info.manifest is None for info in kept):
        # a manifest that cannot be read may name any node backup, any WAL, any point: keep them all
        for info in doomed:
            removed["node_backups"] += remove_parts(root, [info])
        return removed
    manifests = [info.manifest for info in kept if info.manifest is not None]
    referenced = {(name, str(part["backup"])) for m in manifests for name, part in m["nodes"].items()}
    for name in nodes:
        node_root = cluster.node_root(root, name)
        for backup_id in backup_store.backup_ids(node_root):
            if (name, backup_id) not in referenced:
                backup_store.remove_backup(node_root / backup_id)
                removed["node_backups"] += 1
    for name in nodes:
        starts = [start_wal(root, name, str(m["nodes"][name]["backup"])) for m in manifests if name in m["nodes"]]
        if starts and None not in starts:
            first = min((s for s in starts if s is not None), key=lambda s: wal_archive.segment_number(s)[1])
            removed["wal_segments"] += wal_archive.prune_before(cluster.node_root(root, name), first)
    if manifests:
        removed["restore_points"] = drop_points(root, manifests)
    return removed


def remove_parts(root: Path, infos: list[BackupInfo]) -> int:
    count = 0
    for info in infos:
        for name, part in (info.manifest or {}).get("nodes", {}).items():
            path = cluster.node_root(root, name) / str(part["backup"])
            if path.is_dir():
                backup_store.remove_backup(path)
                count += 1
    return count


def start_wal(root: Path, name: str, backup_id: str) -> str | None:
    """The first segment a node backup needs; None when its manifest cannot say (nothing is pruned)."""
    try:
        manifest = backup_store.read_manifest(cluster.node_root(root, name) / backup_id)
        return str(manifest["physical"]["start_wal"])
    except (ManifestError, KeyError, TypeError):
        return None


def drop_points(root: Path, manifests: list[dict[str, Any]]) -> int:
    """Drop the restore points before the oldest kept backup's own: recovery only goes forward from a
    base backup, so no kept backup reaches them (and their WAL is gone)."""
    points = cluster.read_points(root)
    names = [p["name"] for p in points]
    own = [names.index(m["restore_point"]) for m in manifests if m.get("restore_point") in names]
    if not own or min(own) == 0:
        return 0
    with atomic_write(cluster.cluster_root(root) / cluster.POINTS, private=True) as fh:
        json.dump(points[min(own):], fh, indent=2)
    return min(own)
