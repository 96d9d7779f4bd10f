"""``backup create --physical`` on a Citus cluster profile: a verified base backup of every node (base.py,
into the node's area of the repository), then one ``citus_create_restore_point`` named after the
backup, so that the nodes recover to one consistent point; one manifest lists each node's backup and
the point. And what ``backup list`` / ``wal status`` say about the cluster's backups and points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import listing
from dbcli.backup import store as backup_store
from dbcli.backup.physical import base, cluster, server, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.stages import Progress, quiet
from dbcli.backup.store import Clock, iso, utc_now
from dbcli.config.model import Config


def create(cfg: Config, *, root: Path | str | None = None, tag: str | None = None, progress: Progress = quiet,
           clock: Clock = utc_now) -> dict[str, Any]:
    """Base backups of every node and the restore point after them; the cluster backup's summary."""
    where = cluster.local_root(cfg, root)
    nodes = cluster.nodes(cfg)
    cluster.ensure_archiving(cfg, where, nodes)
    tools.client(nodes[0].cfg, "pg_basebackup")
    tools.client(nodes[0].cfg, "pg_verifybackup")  # missing: exit 3 before anything is written
    area = cluster.cluster_root(where)
    with backup_store.locked(area, "backup create --physical (cluster)", clock):
        started = clock()
        backup_id = backup_store.new_id(cfg.profile, tag, started,
                                        lambda i: (area / cluster.BACKUPS / f"{i}.json").exists())
        taken: dict[str, dict[str, Any]] = {}
        try:
            for node in nodes:
                facts = server.facts(node.cfg)
                server.check_can_back_up(facts, incremental=False)
                progress(f"{node.name}: base backup")
                done = base.create_local(node.cfg, cluster.node_root(where, node.name), facts, tag=tag,
                                         incremental=False, progress=progress, clock=clock)
                taken[node.name] = {"backup": done["id"], "port": node.port, "start_lsn": done["start_lsn"],
                                    "end_lsn": done["end_lsn"], "size_bytes": done["size_bytes"],
                                    "server_version": done["server_version"]}
            progress("citus_create_restore_point")
            point = cluster.create_point(cfg, where, nodes, backup_id, backup=backup_id)
        except BaseException:
            # a cluster backup without every node's part restores nothing: no orphans left behind
            for name, part in taken.items():
                backup_store.remove_backup(cluster.node_root(where, name) / part["backup"])
            raise
        finished = clock()
        manifest = {"format": backup_store.FORMAT_VERSION, "id": backup_id, "kind": cluster.KIND,
                    "dbcli_version": __version__, "profile": cfg.profile, "tag": tag, "status": "ok",
                    "started_at": iso(started), "finished_at": iso(finished),
                    "duration_s": round((finished - started).total_seconds(), 3),
                    "nodes": taken, "restore_point": point["name"]}
        cluster.write_backup(where, manifest)
    cluster.wait_archived(where, point)
    return {"id": backup_id, "status": "ok", "path": str(area), "kind": cluster.KIND,
            "nodes": ",".join(f"{n}={p['backup']}" for n, p in taken.items()),
            "restore_point": point["name"], "coordinator_lsn": point["coordinator_lsn"],
            "started_at": manifest["started_at"], "duration_s": manifest["duration_s"],
            "size_bytes": sum(p["size_bytes"] for p in taken.values())}


def list_rows(root: Path, clock: Clock = utc_now) -> list[dict[str, Any]]:
    """``backup list`` rows of the cluster backups (the columns of dbcli.backup.listing): each one
    recovers to its own restore point and to every archived point after it."""
    points = cluster.read_points(root)
    rows = []
    for m in cluster.read_backups(root):
        names = [p["name"] for p in points]
        after = points[names.index(m["restore_point"]):] if m["restore_point"] in names else []
        ready = [p["name"] for p in after if cluster.archived(root, p)]
        rows.append({"id": m["id"], "time": m["started_at"],
                     "targets": f"postgres (cluster: {', '.join(m['nodes'])})",
                     "size": listing.human_size(sum(int(p["size_bytes"]) for p in m["nodes"].values())),
                     "age": listing.human_age(clock() - backup_store.parse_iso(m["started_at"])),
                     "status": m["status"], "verified": verified_text(cluster.read_verification(root, m["id"])),
                     "recovers_to": (f"restore points {ready[0]} .. {ready[-1]} ({len(ready)})" if ready
                                     else "no restore point archived yet")})
    for backup_id, why in cluster.unreadable_backups(root).items():  # shown, never restored or counted
        rows.append({"id": backup_id, "time": None, "targets": "postgres (cluster)", "size": None, "age": None,
                     "status": "damaged", "verified": why, "recovers_to": None})
    return rows


def verified_text(record: dict[str, Any] | None) -> str:
    """The last ``backup verify`` of a cluster backup, as backup list says it of any backup."""
    state = backup_store.verification_state(record)
    if record is None or state is None:
        return "never"
    text = f"{'FAILED' if state == 'failed' else state} {record.get('verified_at', '?')}"
    text += " (restore-test)" if record.get("restore_test") else ""
    reasons = record.get("problems") if state == "failed" else record.get("unverified")
    return f"{text}: {reasons[0]}" if state != "ok" and reasons else text


def wal_status(root: Path) -> dict[str, Any]:
    """What ``wal status`` adds for a repository with a cluster: each node's archive, the points."""
    area = cluster.cluster_root(root)
    names = sorted(p.name for p in area.iterdir() if p.is_dir() and p.name != cluster.BACKUPS) if area.is_dir() else []
    archives = []
    for name in names:
        segments = wal_archive.segments(cluster.node_root(root, name))
        archives.append(f"{name}: {len(segments)} segments" + (f" to {segments[-1]}" if segments else ""))
    points = cluster.read_points(root)
    ready = [p["name"] for p in points if cluster.archived(root, p)]
    return {"cluster_archives": "; ".join(archives) or None, "restore_points": len(points),
            "newest_restorable_point": ready[-1] if ready else None}
