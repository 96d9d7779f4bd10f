"""``backup create``: one complete, checked backup of the configured databases.

Every step is checked: a dump that is empty, truncated or unreadable is an error, not a backup;
a backup exists only once its manifest (counts, sizes, SHA-256 of every file) is written, last:
in a directory, ``.partial-<id>`` is then renamed to ``<id>``; in object storage, the manifest
object is put. See repo for what each kind of repository guarantees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import citus as backup_citus
from dbcli.backup import crypto as backup_crypto
from dbcli.backup import mongo as backup_mongo
from dbcli.backup import pg_dump, pg_dump_dir
from dbcli.backup import store as backup_store
from dbcli.backup.repo import Staging
from dbcli.backup.repo_open import open_repository
from dbcli.backup.scratch import clean_stale
from dbcli.backup.stages import Progress, quiet, reached
from dbcli.backup.store import Clock, iso, utc_now
from dbcli.backup.targets import check_name
from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError


def resolve_targets(cfg: Config, target: str) -> list[str]:
    check_name(target)
    if target == "all":
        return ["postgres", "mongo"] if cfg.mongo.configured else ["postgres"]
    if target == "mongo" and not cfg.mongo.configured:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return [target]


def create(cfg: Config, *, target: str = "all", root: Path | str | None = None, tag: str | None = None,
           progress: Progress = quiet, clock: Clock = utc_now, jobs: int = 1) -> dict[str, Any]:
    """Write one complete, checksummed backup; returns its summary. Exit 75 if another run holds the
    lock. ``root``: the repository (a directory or an s3:// URL), default ``backup.dir``. ``jobs`` > 1:
    the PostgreSQL part in pg_dump's directory format, dumped by that many jobs (pg_dump_dir)."""
    repo = open_repository(cfg, root)
    targets = resolve_targets(cfg, target)
    key = cfg.backup.encryption_key
    level = cfg.backup.compression
    if "postgres" in targets:
        pg_dump_dir.check_jobs(jobs)
    with repo.locked("backup create", clock):
        reached("locked")
        cleaned = repo.clean_leftovers()
        clean_stale()  # scratch directories of killed runs (a decrypted dump, say)
        started = clock()
        backup_id = repo.new_id(cfg.profile, tag, started)
        staging = repo.begin(backup_id)
        manifest: dict[str, Any] = {
            "format": backup_store.FORMAT_VERSION, "id": backup_id, "dbcli_version": __version__,
            "profile": cfg.profile, "tag": tag, "status": "running", "error": None, "targets": targets,
            "started_at": iso(started), "finished_at": None, "compression": level,
            "encryption": ({"algorithm": backup_crypto.ALGORITHM, "key_id": backup_crypto.key_id(key)}
                           if key else None),
        }
        try:
            known: dict[str, str] = {}  # checksums computed along the way
            if "postgres" in targets:
                res = pg_dump.dump(cfg, staging, "postgres", compression=level, key=key, progress=progress,
                                   jobs=jobs)
                manifest["postgres"] = {
                    "database": res.database, "server_version": res.server_version,
                    "pg_dump_version": res.pg_dump_version, "file": res.file,
                    "consistency": "rows counted in the snapshot pg_dump used",
                    # each table's own rows, as its TABLE DATA holds them; a partitioned table:
                    # its partitions' sum (manifests without this key counted children in too)
                    "row_counts": "own",
                    "tables": [t.as_dict() for t in res.tables],
                    "large_objects": res.large_objects,
                }
                if jobs > 1:  # every file of the directory is in "files" (older dbcli cannot restore it)
                    manifest["postgres"] |= {"format": pg_dump_dir.FORMAT, "jobs": jobs}
                if (distribution := backup_citus.describe(cfg)) is not None:
                    manifest["postgres"]["citus"] = distribution  # pg_dump does not hold it
                known |= res.digests
            if "mongo" in targets:
                name, server, colls = backup_mongo.dump(cfg, staging, "mongo", compression=level, key=key,
                                                        progress=progress)
                manifest["mongo"] = {
                    "database": name, "server": server,
                    "consistency": "per collection (no snapshot across collections)",
                    "collections": [vars(c) for c in colls],
                }
            progress("computing checksums")
            manifest["files"] = staging.file_list(known)
            manifest["status"] = "ok"
            finished = clock()
            manifest["finished_at"] = iso(finished)
            manifest["duration_s"] = round((finished - started).total_seconds(), 3)
            where = staging.commit(manifest)
        except Exception as e:
            _record_failure(staging, manifest, e, clock)
            if isinstance(e, OSError) and staging.local_dir is not None:
                raise backup_store.disk_error(e, staging.local_dir) from e
            raise
        except BaseException:
            staging.discard()
            raise
    return summary(manifest, where) | {"cleaned_leftovers": len(cleaned)}


def _record_failure(staging: Staging, manifest: dict[str, Any], error: Exception, clock: Clock) -> None:
    """Keep a manifest-only record of a failed run (``backup list`` shows it; prune removes it)."""
    message = error.message if isinstance(error, DbcliError) else f"{type(error).__name__}: {error}"
    staging.fail({**manifest, "status": "failed", "error": message[:500], "finished_at": iso(clock()), "files": {}})


def summary(manifest: dict[str, Any], path: str) -> dict[str, Any]:
    pg = manifest.get("postgres") or {}
    mg = manifest.get("mongo") or {}
    files = manifest.get("files") or {}
    return {
        "id": manifest["id"], "status": manifest.get("status"), "path": path,
        "targets": manifest.get("targets"), "started_at": manifest["started_at"],
        "duration_s": manifest.get("duration_s"),
        "size_bytes": sum(f["size"] for f in files.values()),
        "tables": len(pg.get("tables", [])), "rows": sum(t["rows"] for t in pg.get("tables", []) if t["kind"] != "p"),
        "collections": len(mg.get("collections", [])),
        "documents": sum(c["documents"] for c in mg.get("collections", [])),
        "encrypted": bool(manifest.get("encryption")),
    }
