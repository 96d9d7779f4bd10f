"""``backup restore``: a backup back into a profile's servers, checked before and counted after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli.backup import archive_transfer, pg_dump_dir, pg_restore, pg_restore_jobs
from dbcli.backup import citus as backup_citus
from dbcli.backup import crypto as backup_crypto
from dbcli.backup import mongo as backup_mongo
from dbcli.backup.archive_check import ArchiveCheck
from dbcli.backup.pg_compat import check_restore_tool, check_target, server_version_num
from dbcli.backup.pg_restore_sql import target_has_tables
from dbcli.backup.repo import Blob
from dbcli.backup.repo_local import LocalBlob
from dbcli.backup.repo_open import open_repository
from dbcli.backup.scratch import Scratch
from dbcli.backup.stages import Progress, quiet
from dbcli.backup.targets import check_name
from dbcli.backup.verify import Verification, check_files, size_problem
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConflictError, NotFoundError, UsageError
from dbcli.postgres import connection as postgres
from dbcli.postgres.tools import find_tools, tool_version


def restore(source_cfg: Config, target_cfg: Config, *, backup_id: str, root: Path | str | None = None,
            target: str = "all", drop: bool = False, no_owner: bool = False, without_citus: bool = False,
            progress: Progress = quiet, jobs: int = 1) -> list[dict[str, Any]]:
    """Restore a backup into ``target_cfg``'s servers; rows of expected and restored counts.

    ``jobs`` > 1: the PostgreSQL part by ``pg_restore -j`` (pg_restore_jobs), not in one transaction.

    Refuses a non-empty target without ``drop`` (exit 7), a damaged backup (exit 8), a pg_restore or
    target server older than the backup needs (exit 3); the caller
    turns a count mismatch into exit 8 (see ``mismatches``).

    An archive pg_restore must read on a local disk (``jobs`` > 1, a directory archive) that is
    encrypted or in object storage is fetched into a scratch directory first (archive_transfer),
    every file checked, and removed after.
    """
    with Scratch() as scratch, ArchiveCheck() as archive_check:
        return _restore(source_cfg, target_cfg, backup_id=backup_id, root=root, target=target, drop=drop,
                        no_owner=no_owner, without_citus=without_citus, progress=progress, jobs=jobs,
                        scratch=scratch, archive_check=archive_check)


def _restore(source_cfg: Config, target_cfg: Config, *, backup_id: str, root: Path | str | None, target: str,
             drop: bool, no_owner: bool, without_citus: bool, progress: Progress, jobs: int,
             scratch: Scratch, archive_check: ArchiveCheck) -> list[dict[str, Any]]:
    repo = open_repository(source_cfg, root)
    info = repo.find_backup(backup_id, kind="logical")  # "latest": the newest backup this command restores
    files = repo.files(info)
    if info.manifest is None:
        raise CheckFailedError(f"backup {info.id} is damaged: {info.problem}")
    manifest = info.manifest
    if manifest.get("kind") == "physical":
        raise UsageError(f"backup {info.id} is a physical backup",
                         hint="restore it with: backup restore --physical --data-dir DIR (see docs/pitr.md)")
    if manifest.get("status") != "ok":
        raise CheckFailedError(f"backup {info.id} is not complete (status {manifest.get('status')})")
    parts = [t for t in ("postgres", "mongo") if manifest.get(t)]
    if target != "all":
        check_name(target)
        if target not in parts:
            raise NotFoundError(f"backup {info.id} has no {target} dump")
        parts = [target]
    key = backup_crypto.manifest_key(source_cfg, manifest)
    progress(f"checking {info.id} before restoring")
    check = Verification(info.id)
    wanted = set()
    for c in (manifest.get("mongo") or {}).get("collections", []) if "mongo" in parts else []:
        wanted |= {c["bson_file"], c["metadata_file"]}
    check_files(files, {k: v for k, v in manifest["files"].items() if k in wanted}, check, strays=False)
    whole_first = "postgres" in parts and (jobs > 1 or pg_dump_dir.is_directory(manifest["postgres"]))
    pg_source: Blob | None = None  # the archive fetched into the scratch directory
    pg_key = key
    if whole_first:
        # pg_restore reads these itself (-j, a directory): their checksums first, before anything is written
        archive = manifest["postgres"]["file"]
        listed = pg_dump_dir.archive_files(manifest, archive)
        if key is None and files.blob(archive).local is not None and jobs > 1:
            archive_check.start(files, listed, info.id)  # while the target is checked (archive_check)
        elif key is None and files.blob(archive).local is not None:
            check_files(files, listed, check, strays=False)
        else:
            local = archive_transfer.fetch(files, listed, archive, key, scratch.path(), check.add, progress=progress)
            pg_source, pg_key = LocalBlob(local), None
    elif "postgres" in parts:
        # the dump's size now; its checksum while pg_restore reads it, before anything is committed
        dump = manifest["postgres"]["file"]
        wrong = size_problem(files.blob(dump), manifest["files"][dump])
        if wrong:
            check.add("checksum", dump, False, wrong)
    if check.problems:
        raise CheckFailedError(f"backup {info.id} is damaged: {check.problems[0]}")
    server_num, distribute = 0, False
    if "postgres" in parts:
        # a tool or server too old for this backup is refused before anything changes (exit 3)
        pg = manifest["postgres"]
        tools = find_tools(target_cfg)
        check_restore_tool(tools.pg_restore, tool_version(tools.pg_restore), pg.get("pg_dump_version"))
        server_num = server_version_num(target_cfg)
        check_target(pg.get("server_version"), server_num)
        # a Citus backup: into a Citus database (distributed again after), or --without-citus (exit 3)
        distribute = backup_citus.check_target(target_cfg, pg.get("citus"), without_citus=without_citus)
    # refuse before changing anything, whichever target is not empty (PostgreSQL checks again
    # inside its restore transaction, which is enough when it is the only target)
    if not drop:
        if "postgres" in parts and "mongo" in parts:
            with postgres.connect(target_cfg, autocommit=True) as conn, postgres.errors_translated(target_cfg):
                if target_has_tables(conn):
                    db = conn.info.dbname
                    raise ConflictError(f"postgres database {db} is not empty",
                                        hint="use --drop to replace its objects")
        if "mongo" in parts and backup_mongo.target_collections(target_cfg):
            raise ConflictError(f"mongo database {target_cfg.mongo.database} is not empty",
                                hint="use --drop to replace the backed-up collections")
    rows: list[dict[str, Any]] = []
    try:
        if "postgres" in parts:
            pg = manifest["postgres"]
            source = pg_source or files.blob(pg["file"])
            listing = (backup_citus.ListWithoutCitus(target_cfg, source, pg_key)
                       if pg.get("citus") else None)  # the target has its own extension, or none
            try:
                if jobs > 1:
                    if distribute:
                        raise UsageError("restore --jobs cannot recreate a Citus distribution: drop --jobs")
                    done = pg_restore_jobs.restore(target_cfg, source, jobs=jobs, drop=drop, server_num=server_num,
                                                   tables=pg["tables"], no_owner=no_owner,
                                                   own_rows=pg.get("row_counts") == "own",
                                                   use_list=listing.path if listing else None, progress=progress,
                                                   before_writing=archive_check.result)
                else:
                    done = pg_restore.restore(target_cfg, source, key=pg_key, drop=drop,
                                           tables=pg["tables"], sha256=None if whole_first
                                           else manifest["files"][pg["file"]]["sha256"],
                                           server_num=server_num,
                                           large_objects=pg.get("large_objects"), no_owner=no_owner,
                                           own_rows=pg.get("row_counts") == "own",
                                           use_list=listing.path if listing else None,
                                           session_sql=backup_citus.restore_session(
                                               pg.get("citus") if distribute else None, drop=drop),
                                           progress=progress)
            except pg_restore.DamagedArchive as e:
                raise CheckFailedError(f"backup {info.id} is damaged: {pg['file']}: {e.detail}",
                                       hint="nothing was restored" if jobs == 1
                                       else "restore --jobs keeps what was restored before it") from None
            rows += [{"target": "postgres", "name": f"{r['schema']}.{r['table']}", "expected": r["expected"],
                      "restored": r["actual"], "rolled_back": done.rolled_back} for r in done.counts]
            if not done.committed:
                return _checked(rows)  # the database is as it was: the mongo part is not started either
            if distribute:
                progress("postgres: recreating the Citus distribution")
                counts = backup_citus.redistribute(target_cfg, pg["citus"])
                for r in rows:
                    r["restored"] = counts.get(tuple(r["name"].split(".", 1)), r["restored"])
        if "mongo" in parts:
            mg = manifest["mongo"]
            backup_mongo.restore(target_cfg, files, mg["collections"], key=key, drop=drop, progress=progress)
            rows += [{"target": "mongo", "name": r["collection"], "expected": r["expected"],
                      "restored": r["actual"]} for r in backup_mongo.restored_counts(target_cfg, mg["collections"])]
    except backup_crypto.DecryptError as e:
        raise CheckFailedError(f"backup {info.id}: {e}") from None
    return _checked(rows)


def _checked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["ok"] = r["expected"] == r["restored"]
    return rows


def mismatches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r["ok"]]
