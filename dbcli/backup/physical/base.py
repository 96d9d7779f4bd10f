"""``backup create --physical [--incremental]``: a base backup of the whole server into the repository.

pg_basebackup writes tar files and its own checksummed ``backup_manifest`` (SHA-256) into
``.partial-<id>/base/``, with the WAL the backup needs (``-X stream``), so the backup restores on its
own; pg_verifybackup then checks it against that manifest. dbcli's manifest comes last, as for
logical backups: it records the WAL range, the server, and for an incremental backup (PostgreSQL 17+,
``summarize_wal = on``) the chain of backups it depends on. Then the directory is renamed to its id.
``take``, ``finish`` and ``summary`` are shared with base_s3 (the same backup, uploaded to S3).
With ``backup.encryption_key`` pg_basebackup writes into a private scratch directory instead, and
the checked files go into ``.partial-<id>/base/`` encrypted (base_crypto).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import store as backup_store
from dbcli.backup.physical import base_crypto, location, server, tools
from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.scratch import Scratch
from dbcli.backup.stages import Progress, reached
from dbcli.backup.store import BackupInfo, Clock, iso
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, NotFoundError
from dbcli.fsutil import fsync_path
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import libpq_connection

KIND = physical_chain.KIND
BASE = "base"  # the directory pg_basebackup writes into
TIMEOUT = 24 * 3600.0  # a base backup of a large server takes hours, not days


def damaged(info: BackupInfo, what: str) -> CheckFailedError:
    return CheckFailedError(f"backup {info.id} is damaged: {what}")


def backup_dir(info: BackupInfo) -> Path:
    if info.path is None:
        raise ConfigError(f"backup {info.id} is not in a local directory")
    return info.path


def create_local(cfg: Config, root: Path, facts: server.ServerFacts, *, tag: str | None, incremental: bool,
                 progress: Progress, clock: Clock) -> dict[str, Any]:
    """The base backup into a local repository: ``.partial-<id>/`` renamed to ``<id>/`` once complete."""
    with backup_store.locked(root, "backup create --physical", clock):
        reached("locked")
        cleaned = backup_store.clean_leftovers(root)
        parent = newest(root) if incremental else None
        started = clock()
        backup_id = backup_store.new_id(cfg.profile, tag, started, root)
        try:
            partial = backup_store.private_dir(root / f"{backup_store.PARTIAL}{backup_id}")
        except OSError as e:
            raise backup_store.disk_error(e, root) from None
        key = cfg.backup.encryption_key
        with tools.removed_on_failure(partial), Scratch() as scratch:
            parent_manifest = (base_crypto.plain_manifest(parent, backup_dir(parent) / BASE, scratch.path(),
                                                          base_crypto.key_of(cfg, parent)) if parent else None)
            staged = scratch.path() / "backup" if key else partial  # plain files never enter the repository
            manifest = take(cfg, facts, staged, backup_id, tag, parent, parent_manifest, started, progress)
            if key:
                progress(f"encrypting into {partial}")
                base_crypto.seal_tree(staged, partial, key)
            manifest["files"] = {str(p.relative_to(partial)): {"size": p.stat().st_size,
                                                               "sha256": backup_store.sha256_file(p)}
                                 for p in backup_store.data_files(partial)}
            finish(manifest, started, clock)
            backup_store.write_manifest(partial, manifest)
            for d in [partial, *(p for p in partial.rglob("*") if p.is_dir())]:
                fsync_path(d)
            reached("manifest")
            os.replace(partial, root / backup_id)
            fsync_path(root)
    return summary(manifest, str(root / backup_id), cleaned)


def take(cfg: Config, facts: server.ServerFacts, directory: Path, backup_id: str, tag: str | None,
         parent: BackupInfo | None, parent_manifest: Path | None, started: dt.datetime,
         progress: Progress) -> dict[str, Any]:
    """pg_basebackup into ``directory/base``, checked by pg_verifybackup; dbcli's manifest without files."""
    args = [str(tools.client(cfg, "pg_basebackup")), "-D", str(directory / BASE), "--format=tar",
            "--wal-method=stream", "--checkpoint=fast", "--manifest-checksums=SHA256", "--no-password",
            f"--label=dbcli {backup_id}"]
    if cfg.backup.compression:
        args.append(f"--compress=client-gzip:{cfg.backup.compression}")
    if parent_manifest is not None:
        args.append(f"--incremental={parent_manifest}")
    progress(f"postgres: pg_basebackup{' --incremental' if parent else ''} of {facts.version}")
    with libpq_connection(conn_params(cfg)) as (env, conn_arg):
        tools.run("pg_basebackup", [*args, conn_arg], env=env, timeout=TIMEOUT)
    reached("pg_basebackup")
    progress("postgres: pg_verifybackup")
    verify_files(cfg, directory / BASE)
    pg_manifest = json.loads((directory / BASE / "backup_manifest").read_text(encoding="utf-8"))
    ranges = pg_manifest.get("WAL-Ranges") or [{}]
    timeline = int(ranges[-1].get("Timeline", 1))
    chain = [*physical_chain.depends_on(parent.manifest), parent.id] if parent else []
    return {
        "format": backup_store.FORMAT_VERSION, "id": backup_id, "kind": KIND,
        "dbcli_version": __version__, "profile": cfg.profile, "tag": tag, "status": "ok", "error": None,
        "targets": ["postgres"], "started_at": iso(started), "compression": cfg.backup.compression,
        "encryption": base_crypto.record(cfg.backup.encryption_key),
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


def finish(manifest: dict[str, Any], started: dt.datetime, clock: Clock) -> None:
    finished = clock()
    manifest["finished_at"] = iso(finished)
    manifest["duration_s"] = round((finished - started).total_seconds(), 3)


def summary(manifest: dict[str, Any], path: str, cleaned: list[str]) -> dict[str, Any]:
    meta = manifest[KIND]
    return {"id": manifest["id"], "status": "ok", "path": path, "kind": KIND,
            "incremental_of": meta["incremental_of"], "started_at": manifest["started_at"],
            "duration_s": manifest["duration_s"], "size_bytes": sum(f["size"] for f in manifest["files"].values()),
            "server_version": meta["server_version"], "start_lsn": meta["start_lsn"], "end_lsn": meta["end_lsn"],
            "cleaned_leftovers": len(cleaned)}


def verify_files(cfg: Config, directory: Path) -> None:
    """pg_verifybackup of a base backup directory against its backup_manifest."""
    verifier = tools.client(cfg, "pg_verifybackup")
    # WAL inside a tar file cannot be parsed by pg_waldump: the manifest checks its bytes
    tools.run("pg_verifybackup", [str(verifier), "--no-parse-wal", "--quiet", str(directory)], timeout=TIMEOUT)


def newest(root: Root) -> BackupInfo:
    """The newest complete physical backup: what an incremental one is taken against."""
    found = physical_chain.physical_backups(root)
    if not found:
        raise NotFoundError(f"no physical backup in {location.text(root)} to take an incremental backup against",
                            hint="take a full one first: dbcli backup create --physical")
    return found[-1]


def chain_of(root: Root, info: BackupInfo) -> list[BackupInfo]:
    """The backups a restore of ``info`` combines, full backup first; NotFoundError if one is gone."""
    ids = [*physical_chain.depends_on(info.manifest), info.id]
    by_id = {b.id: b for b in physical_chain.physical_backups(root)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise NotFoundError(f"backup {info.id} is incremental on {missing[0]}, which is not in {location.text(root)}")
    return [by_id[i] for i in ids]
