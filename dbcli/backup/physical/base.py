"""``backup create --physical [--incremental]``: a base backup of the whole server into the repository.

pg_basebackup writes tar files and its own checksummed ``backup_manifest`` (SHA-256) into
``.partial-<id>/base/``, with the WAL the backup needs (``-X stream``), so the backup restores on its
own; pg_verifybackup then checks it against that manifest. dbcli's manifest comes last, as for
logical backups: it records the WAL range, the server, and for an incremental backup (PostgreSQL 17+,
``summarize_wal = on``) the chain of backups it depends on. Then the directory is renamed to its id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import store as backup_store
from dbcli.backup.pg_tools import libpq_connection
from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical import server, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.stages import Progress, quiet, reached
from dbcli.backup.store import BackupInfo, Clock, iso, utc_now
from dbcli.config.model import Config
from dbcli.errors import ConfigError, NotFoundError
from dbcli.fsutil import fsync_path
from dbcli.postgres.params import conn_params

KIND = physical_chain.KIND
BASE = "base"  # the directory pg_basebackup writes into
TIMEOUT = 24 * 3600.0  # a base backup of a large server takes hours, not days


def local_root(cfg: Config, root: Path | None) -> Path:
    """The repository as a local directory: physical backups and the WAL archive are local only for now."""
    found = root or backup_store.root_dir(cfg)
    if str(found).startswith("s3:"):
        raise ConfigError(f"physical backups need a local backup directory, not {found}",
                          hint="set --dir (or backup.dir) to a local path for --physical and wal commands")
    return Path(found)


def backup_dir(info: BackupInfo) -> Path:
    if info.path is None:
        raise ConfigError(f"backup {info.id} is not in a local directory")
    return info.path


def create(cfg: Config, *, root: Path | None = None, tag: str | None = None, incremental: bool = False,
           progress: Progress = quiet, clock: Clock = utc_now) -> dict[str, Any]:
    """Write one base backup (full, or incremental on the newest physical backup); its summary."""
    root = local_root(cfg, root)
    server.ensure_archiving(cfg, root)
    facts = server.facts(cfg)
    server.check_can_back_up(facts, incremental=incremental)
    basebackup = tools.client(cfg, "pg_basebackup")
    tools.client(cfg, "pg_verifybackup")  # missing: exit 3 before anything is written
    with backup_store.locked(root, "backup create --physical", clock):
        reached("locked")
        cleaned = backup_store.clean_leftovers(root)
        parent = _parent(root) if incremental else None
        started = clock()
        backup_id = backup_store.new_id(cfg.profile, tag, started, root)
        try:
            partial = backup_store.private_dir(root / f"{backup_store.PARTIAL}{backup_id}")
        except OSError as e:
            raise backup_store.disk_error(e, root) from None
        with tools.removed_on_failure(partial):
            args = [str(basebackup), "-D", str(partial / BASE), "--format=tar", "--wal-method=stream",
                    "--checkpoint=fast", "--manifest-checksums=SHA256", "--no-password",
                    f"--label=dbcli {backup_id}"]
            if cfg.backup.compression:
                args.append(f"--compress=client-gzip:{cfg.backup.compression}")
            if parent is not None:
                args.append(f"--incremental={backup_dir(parent) / BASE / 'backup_manifest'}")
            progress(f"postgres: pg_basebackup{' --incremental' if parent else ''} of {facts.version}")
            with libpq_connection(conn_params(cfg)) as (env, conn_arg):
                tools.run("pg_basebackup", [*args, conn_arg], env=env, timeout=TIMEOUT)
            reached("pg_basebackup")
            progress("postgres: pg_verifybackup")
            verify_files(cfg, partial / BASE)
            pg_manifest = json.loads((partial / BASE / "backup_manifest").read_text(encoding="utf-8"))
            ranges = pg_manifest.get("WAL-Ranges") or [{}]
            timeline = int(ranges[-1].get("Timeline", 1))
            chain = [*physical_chain.depends_on(parent.manifest), parent.id] if parent else []
            manifest: dict[str, Any] = {
                "format": backup_store.FORMAT_VERSION, "id": backup_id, "kind": KIND,
                "dbcli_version": __version__, "profile": cfg.profile, "tag": tag, "status": "ok", "error": None,
                "targets": ["postgres"], "started_at": iso(started), "compression": cfg.backup.compression,
                "encryption": None,
                KIND: {
                    "server_version": facts.version, "major": facts.major,
                    "system_identifier": pg_manifest.get("System-Identifier"),
                    "timeline": timeline, "start_lsn": ranges[0].get("Start-LSN"),
                    "end_lsn": ranges[-1].get("End-LSN"),
                    "start_wal": wal_archive.segment_of(ranges[0].get("Start-LSN", "0/0"), timeline),
                    "incremental_of": parent.id if parent else None, "chain": chain,
                    "wal_archived": facts.archive_mode != "off",
                },
            }
            manifest["files"] = {str(p.relative_to(partial)): {"size": p.stat().st_size,
                                                               "sha256": backup_store.sha256_file(p)}
                                 for p in backup_store.data_files(partial)}
            finished = clock()
            manifest["finished_at"] = iso(finished)
            manifest["duration_s"] = round((finished - started).total_seconds(), 3)
            backup_store.write_manifest(partial, manifest)
            for d in [partial, *(p for p in partial.rglob("*") if p.is_dir())]:
                fsync_path(d)
            reached("manifest")
            os.replace(partial, root / backup_id)
            fsync_path(root)
    meta = manifest[KIND]
    return {"id": backup_id, "status": "ok", "path": str(root / backup_id), "kind": KIND,
            "incremental_of": meta["incremental_of"], "started_at": manifest["started_at"],
            "duration_s": manifest["duration_s"], "size_bytes": sum(f["size"] for f in manifest["files"].values()),
            "server_version": meta["server_version"], "start_lsn": meta["start_lsn"], "end_lsn": meta["end_lsn"],
            "cleaned_leftovers": len(cleaned)}


def verify_files(cfg: Config, directory: Path) -> None:
    """pg_verifybackup of a base backup directory against its backup_manifest."""
    verifier = tools.client(cfg, "pg_verifybackup")
    # WAL inside a tar file cannot be parsed by pg_waldump: the manifest checks its bytes
    tools.run("pg_verifybackup", [str(verifier), "--no-parse-wal", "--quiet", str(directory)], timeout=TIMEOUT)


def _parent(root: Path) -> BackupInfo:
    """The newest complete physical backup: what an incremental one is taken against."""
    found = physical_chain.physical_backups(root)
    if not found:
        raise NotFoundError(f"no physical backup in {root} to take an incremental backup against",
                            hint="take a full one first: dbcli backup create --physical")
    return found[-1]


def chain_of(root: Path, info: BackupInfo) -> list[BackupInfo]:
    """The backups a restore of ``info`` combines, full backup first; NotFoundError if one is gone."""
    ids = [*physical_chain.depends_on(info.manifest), info.id]
    by_id = {b.id: b for b in physical_chain.physical_backups(root)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise NotFoundError(f"backup {info.id} is incremental on {missing[0]}, which is not in {root}")
    return [by_id[i] for i in ids]
