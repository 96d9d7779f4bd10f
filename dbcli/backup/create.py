"""``backup create``: one complete, checked backup of the configured databases.

Every step is checked: a dump that is empty, truncated or unreadable is an error, not a backup;
a backup is written under ``.partial-<id>`` and renamed to ``<id>`` only once its manifest (counts,
sizes, SHA-256 of every file) is on disk. See store for the directory layout.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import crypto as backup_crypto
from dbcli.backup import mongo as backup_mongo
from dbcli.backup import pg_dump
from dbcli.backup import store as backup_store
from dbcli.backup.stages import Progress, quiet, reached
from dbcli.backup.store import Clock, iso, utc_now
from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError, UsageError
from dbcli.fsutil import fsync_path

TARGETS = ("postgres", "mongo", "all")


def resolve_targets(cfg: Config, target: str) -> list[str]:
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    if target == "all":
        return ["postgres", "mongo"] if cfg.mongo.configured else ["postgres"]
    if target == "mongo" and not cfg.mongo.configured:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return [target]


def create(cfg: Config, *, target: str = "all", root: Path | None = None, tag: str | None = None,
           progress: Progress = quiet, clock: Clock = utc_now) -> dict[str, Any]:
    """Write one complete, checksummed backup; returns its summary. Exit 75 if another run holds the lock."""
    root = root or backup_store.root_dir(cfg)
    targets = resolve_targets(cfg, target)
    key = cfg.backup.encryption_key
    level = cfg.backup.compression
    with backup_store.locked(root, "backup create", clock):
        reached("locked")
        cleaned = backup_store.clean_leftovers(root)
        started = clock()
        backup_id = backup_store.new_id(cfg.profile, tag, started, root)
        try:
            partial = backup_store.private_dir(root / f"{backup_store.PARTIAL}{backup_id}")
        except OSError as e:
            raise backup_store.disk_error(e, root) from None
        manifest: dict[str, Any] = {
            "format": backup_store.FORMAT_VERSION, "id": backup_id, "dbcli_version": __version__,
            "profile": cfg.profile, "tag": tag, "status": "running", "error": None, "targets": targets,
            "started_at": iso(started), "finished_at": None, "compression": level,
            "encryption": ({"algorithm": backup_crypto.ALGORITHM, "key_id": backup_crypto.key_id(key)}
                           if key else None),
        }
        try:
            known: dict[Path, str] = {}  # checksums computed along the way
            if "postgres" in targets:
                res = pg_dump.dump(cfg, partial / "postgres", compression=level, key=key, progress=progress)
                manifest["postgres"] = {
                    "database": res.database, "server_version": res.server_version,
                    "pg_dump_version": res.pg_dump_version, "file": str(res.file.relative_to(partial)),
                    "consistency": "rows counted in the snapshot pg_dump used",
                    # each table's own rows, as its TABLE DATA holds them; a partitioned table:
                    # its partitions' sum (manifests without this key counted children in too)
                    "row_counts": "own",
                    "tables": [t.as_dict() for t in res.tables],
                    "large_objects": res.large_objects,
                }
                known[res.file] = res.sha256
            if "mongo" in targets:
                name, server, colls = backup_mongo.dump(cfg, partial / "mongo", partial, compression=level,
                                                        key=key, progress=progress)
                manifest["mongo"] = {
                    "database": name, "server": server,
                    "consistency": "per collection (no snapshot across collections)",
                    "collections": [vars(c) for c in colls],
                }
            progress("computing checksums")
            manifest["files"] = {str(p.relative_to(partial)): {
                "size": p.stat().st_size, "sha256": known.get(p) or backup_store.sha256_file(p)}
                for p in backup_store.data_files(partial)}
            manifest["status"] = "ok"
            finished = clock()
            manifest["finished_at"] = iso(finished)
            manifest["duration_s"] = round((finished - started).total_seconds(), 3)
            backup_store.write_manifest(partial, manifest)
            for d in [partial, *(p for p in partial.rglob("*") if p.is_dir())]:
                fsync_path(d)
            reached("manifest")
            os.replace(partial, root / backup_id)
            fsync_path(root)
        except Exception as e:
            _record_failure(root, partial, backup_id, manifest, e, clock)
            if isinstance(e, OSError):
                raise backup_store.disk_error(e, partial) from e
            raise
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    final = root / backup_id
    return summary(manifest, final) | {"cleaned_leftovers": len(cleaned)}


def _record_failure(root: Path, partial: Path, backup_id: str, manifest: dict[str, Any], error: Exception,
                    clock: Clock) -> None:
    """Keep a manifest-only record of a failed run (``backup list`` shows it; prune removes it)."""
    try:
        for child in partial.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        message = error.message if isinstance(error, DbcliError) else f"{type(error).__name__}: {error}"
        backup_store.write_manifest(partial, {**manifest, "status": "failed", "error": message[:500],
                                              "finished_at": iso(clock()), "files": {}})
        os.replace(partial, root / backup_id)
    except (OSError, DbcliError):  # atomic_write maps a refused write to a DbcliError
        shutil.rmtree(partial, ignore_errors=True)  # the next run cleans whatever is left


def summary(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    pg = manifest.get("postgres") or {}
    mg = manifest.get("mongo") or {}
    files = manifest.get("files") or {}
    return {
        "id": manifest["id"], "status": manifest.get("status"), "path": str(path),
        "targets": manifest.get("targets"), "started_at": manifest["started_at"],
        "duration_s": manifest.get("duration_s"),
        "size_bytes": sum(f["size"] for f in files.values()),
        "tables": len(pg.get("tables", [])), "rows": sum(t["rows"] for t in pg.get("tables", []) if t["kind"] != "p"),
        "collections": len(mg.get("collections", [])),
        "documents": sum(c["documents"] for c in mg.get("collections", [])),
        "encrypted": bool(manifest.get("encryption")),
    }
