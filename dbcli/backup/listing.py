"""``backup list``: one row per backup in the directory, from its manifest and last verification."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from dbcli.backup import store as backup_store
from dbcli.backup.physical import listing as physical_listing
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical import wal_s3
from dbcli.backup.repo import Repository
from dbcli.backup.repo_local import LocalRepository
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.store import Clock, iso, utc_now

LIST_COLUMNS = ["id", "time", "targets", "size", "age", "status", "verified", "recovers_to"]


def list_rows(root: Path | Repository, clock: Clock = utc_now) -> list[dict[str, Any]]:
    """``root``: a backup directory, or any repository (see repo_open)."""
    repo = LocalRepository(root) if isinstance(root, Path) else root
    now = clock()
    rows = []
    backups = repo.list_backups()
    # the WAL archive is listed only for a repository with physical backups: one request less on S3
    physical = any(physical_listing.kind_text(b.manifest or {}) for b in backups)
    segments = (wal_archive.segments(repo.root) if isinstance(repo, LocalRepository)
                else wal_s3.segments(repo) if physical and isinstance(repo, S3Repository) else [])
    for b in backups:
        m = b.manifest or {}
        files = m.get("files") or {}
        rows.append({
            "id": b.id,
            "time": iso(b.time) if b.time else None,
            "targets": ",".join(m.get("targets") or []) + (f" ({kind})" if (kind := physical_listing.kind_text(m))
                                                           else "") or None,
            "size": human_size(sum(f.get("size", 0) for f in files.values())) if b.manifest else None,
            "age": human_age(now - b.time) if b.time else None,
            "status": b.status if b.manifest else f"invalid: {b.problem}",
            "verified": _verified_text(b.verification),
            "recovers_to": physical_listing.recovers_to(m, segments) if b.manifest else None,
        })
    return rows


def _verified_text(v: dict[str, Any] | None) -> str:
    state = backup_store.verification_state(v)
    if not v or state is None:
        return "never"
    text = {"ok": "ok", "failed": "FAILED", "unverified": "unverified"}[state] + f" {v.get('verified_at', '?')}"
    if v.get("restore_test"):
        text += " (restore-test)"
    if state == "failed" and v.get("problems"):
        text += f": {v['problems'][0]}"
    if state == "unverified" and v.get("unverified"):
        text += f": {v['unverified'][0]}"
    return text


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_age(delta: dt.timedelta) -> str:
    secs = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"
