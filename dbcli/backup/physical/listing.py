"""What ``backup list`` and ``wal status`` say about physical backups: the kind of backup and the
range of WAL positions a restore can reach from it with the archive as it is now."""

from __future__ import annotations

from typing import Any

from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical import location, wal_s3
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.repo_s3 import S3Repository


def kind_text(manifest: dict[str, Any]) -> str | None:
    """``physical`` or ``incremental on <id>`` for a physical backup; None for a logical one."""
    if not physical_chain.is_physical(manifest):
        return None
    parent = manifest[physical_chain.KIND].get("incremental_of")
    return f"incremental on {parent}" if parent else "physical"


def recovers_to(manifest: dict[str, Any], segments: list[str]) -> str | None:
    """The points a restore of this backup can reach: a logical backup its snapshot, a physical one
    from its end LSN to the end of the unbroken archived WAL after it."""
    if manifest.get("status") != "ok":
        return None
    if not physical_chain.is_physical(manifest):
        return f"{manifest.get('started_at')} (snapshot)"
    meta = manifest[physical_chain.KIND]
    end = str(meta.get("end_lsn"))
    timeline = int(meta.get("timeline") or 1)
    reached = wal_archive.reachable(segments, wal_archive.segment_of(end, timeline))
    if reached is None:
        return f"{end} (end of backup; no archived WAL after it)"
    gap = f"; a segment is missing after {reached.gap_after}" if reached.gap_after else ""
    return f"{end} .. {reached.end_lsn} ({manifest.get('finished_at')} .. archived WAL{gap})"


def wal_status(root: Root) -> dict[str, Any]:
    names = location.segments(root)
    if isinstance(root, S3Repository):
        objects = wal_s3.info(root)
    else:
        directory = wal_archive.wal_dir(root)
        objects = {"dir": str(directory), "partial": sorted(p.name for p in directory.glob("*.partial"))
                   if directory.is_dir() else [],
                   "size": sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
                   if directory.is_dir() else 0}
    physical = physical_chain.physical_backups(root)
    oldest = physical[0].manifest if physical else None
    run = wal_archive.reachable(names, oldest[physical_chain.KIND]["start_wal"]) if oldest and names else None
    return {"dir": objects["dir"], "segments": len(names), "first": names[0] if names else None,
            "last": names[-1] if names else None, "size": objects["size"],
            "physical_backups": len(physical),
            "unbroken_from_oldest_backup_to": run.last if run else None,
            "missing_after": run.gap_after if run else None,
            "partial": objects["partial"]}


