"""A base backup into an S3 repository: ``<prefix>/<id>/base/*.tar.gz``, ``backup_manifest`` and, last,
``<id>/manifest.json``, as for logical backups (see repo_s3): a run killed at any point leaves objects
without a manifest, which ``backup list`` does not show and the next ``create`` or ``prune`` removes.

pg_basebackup writes into a private local staging directory, uploaded once pg_verifybackup has checked
it, not streamed: with ``-X stream`` (the WAL the backup needs, so it restores on its own)
pg_basebackup cannot write tar to stdout, and pg_verifybackup needs the files on disk, before the
backup exists. The staging directory (``$TMPDIR/dbcli-basebackup-<pid>-*``) is removed on every exit
path; one left by a ``kill -9`` is removed by the next physical backup (its pid is gone). With
``backup.encryption_key`` each file is encrypted on its way up (``<name>.enc``, see base_crypto).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dbcli.backup import store as backup_store
from dbcli.backup.physical import base, base_crypto, server, tools
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.stages import Progress, reached
from dbcli.backup.store import BackupInfo, Clock
from dbcli.config.model import Config

STAGING = "dbcli-basebackup-"  # + the pid of the run + a random part
CHUNK = 8 << 20


def clean_staging() -> list[str]:
    """Remove the staging directories of killed runs (their pid is gone); a running one's stays."""
    removed = []
    for leftover in Path(tempfile.gettempdir()).glob(f"{STAGING}*"):
        pid = leftover.name[len(STAGING):].split("-")[0]
        if pid.isdigit() and not tools.pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover.name)
    return removed


def download(repo: S3Repository, info: BackupInfo, rel: str, dest: Path) -> Path:
    """One file of a backup to ``dest`` (checked against the manifest's SHA-256 when it lists it)."""
    blob = repo.files(info).blob(rel)
    try:
        with blob.open() as src, backup_store.open_private(dest) as out:
            shutil.copyfileobj(src, out, CHUNK)
    except FileNotFoundError:
        raise base.damaged(info, f"{rel} is missing") from None
    except OSError as e:
        raise backup_store.disk_error(e, dest) from None
    expected = ((info.manifest or {}).get("files") or {}).get(rel)
    if expected and backup_store.sha256_file(dest) != expected.get("sha256"):
        raise base.damaged(info, f"{rel}: checksum mismatch")
    return dest


def create(cfg: Config, repo: S3Repository, facts: server.ServerFacts, *, tag: str | None, incremental: bool,
           progress: Progress, clock: Clock) -> dict[str, Any]:
    with repo.locked("backup create --physical", clock):
        reached("locked")
        cleaned = repo.clean_leftovers()
        clean_staging()
        parent = base.newest(repo) if incremental else None
        started = clock()
        backup_id = repo.new_id(cfg.profile, tag, started)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-"))
        staged = repo.begin(backup_id)
        key = cfg.backup.encryption_key
        suffix = base_crypto.SUFFIX if key else ""
        try:
            parent_manifest = _parent_manifest(cfg, repo, parent, staging) if parent else None
            local = staging / "backup"
            manifest = base.take(cfg, facts, local, backup_id, tag, parent, parent_manifest, started, progress)
            progress(f"uploading to {repo.location}/{backup_id}" + (" (encrypted)" if key else ""))
            for path in backup_store.data_files(local):
                sink = staged.create(f"{path.relative_to(local)}{suffix}")
                try:
                    if key:
                        base_crypto.seal_file(path, sink, key)
                    else:
                        with open(path, "rb") as fh:
                            while chunk := fh.read(CHUNK):
                                sink.write(chunk)
                except OSError as e:
                    sink.abort()
                    raise backup_store.disk_error(e, path) from None
                sink.commit()
            manifest["files"] = staged.file_list({})
            base.finish(manifest, started, clock)
            staged.commit(manifest)  # last: the backup exists from here on
        except BaseException:
            staged.discard()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return base.summary(manifest, f"{repo.location}/{backup_id}", cleaned)


def _parent_manifest(cfg: Config, repo: S3Repository, parent: BackupInfo, staging: Path) -> Path:
    """The previous backup's backup_manifest, plain, in the private staging directory."""
    key = base_crypto.key_of(cfg, parent)
    rel = f"{base.BASE}/{base_crypto.MANIFEST}"
    if f"{rel}{base_crypto.SUFFIX}" not in ((parent.manifest or {}).get("files") or {}):
        return download(repo, parent, rel, staging / "parent_manifest")
    sealed = download(repo, parent, f"{rel}{base_crypto.SUFFIX}", staging / "parent_manifest.enc")
    return base_crypto.decrypt_file(parent, sealed, staging / "parent_manifest", key)
