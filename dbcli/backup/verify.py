"""``backup verify``: re-read a backup end to end (checksums, pg_restore, every BSON document),
optionally restore it into scratch databases; the verdict is recorded beside the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from dbcli import __version__
from dbcli.backup import archive_transfer, pg_dump_dir, pg_restore
from dbcli.backup import crypto as backup_crypto
from dbcli.backup import mongo as backup_mongo
from dbcli.backup import store as backup_store
from dbcli.backup.pg_archive import check_archive
from dbcli.backup.pg_compat import check_restore_tool, check_target, server_version_num
from dbcli.backup.physical import check as physical_check
from dbcli.backup.physical import cluster, cluster_verify
from dbcli.backup.physical import location as physical_location
from dbcli.backup.repo import BackupFiles, Blob, Repository
from dbcli.backup.repo_local import LocalBlob, LocalFiles, LocalRepository
from dbcli.backup.repo_open import open_repository
from dbcli.backup.s3_client import is_url
from dbcli.backup.scratch import Scratch
from dbcli.backup.stages import Progress, quiet
from dbcli.backup.store import BackupInfo, Clock, iso, utc_now
from dbcli.backup.threads import for_each
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, DbcliError, NotFoundError, UnreachableError
from dbcli.postgres import connection as postgres
from dbcli.postgres.tools import find_tools, tool_version


@dataclass
class Verification:
    """The checks of one backup and the state they add up to.

    ``failed``: a check found the backup damaged or wrong. ``unverified``: none did, but a check
    could not run (no server configured or reachable, a tool missing or too old, a server older
    than the backup's); ``causes`` holds why. ``ok``: every check ran and passed.
    """

    id: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    causes: list[DbcliError] = field(default_factory=list)

    def add(self, check: str, subject: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"check": check, "subject": subject, "ok": ok, "detail": detail})

    def skip(self, check: str, subject: str, cause: DbcliError) -> None:
        """A check that could not run: ``ok`` is null and the detail says why."""
        self.checks.append({"check": check, "subject": subject, "ok": None, "detail": f"not checked: {cause.message}"})
        self.causes.append(cause)

    @property
    def state(self) -> str:
        if any(c["ok"] is False for c in self.checks):
            return "failed"
        return "unverified" if self.causes else "ok"

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def problems(self) -> list[str]:
        return [f"{c['subject']}: {c['detail']}" for c in self.checks if c["ok"] is False]

    @property
    def reasons(self) -> list[str]:
        """Why the checks that did not run could not (``unverified``)."""
        return [f"{c['subject']}: {c['detail'].removeprefix('not checked: ')}" for c in self.checks
                if c["ok"] is None]

    def raise_if_failed(self) -> None:
        """Exit 8 when failed; when unverified, the cause's code: 4 for a server that could not be
        reached, 3 for anything else (configuration, tools, versions)."""
        state = self.state
        if state == "failed":
            problems = self.problems
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CheckFailedError(f"backup {self.id} failed verification: {problems[0]}{more}")
        if state == "unverified":
            reasons = self.reasons
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            kind = UnreachableError if isinstance(self.causes[0], UnreachableError) else ConfigError
            raise kind(f"backup {self.id} could not be verified: {reasons[0]}{more}",
                       hint=self.causes[0].hint or "nothing wrong was found in what could be checked")


def check_files(files: BackupFiles, listed: dict[str, Any], result: Verification, *, strays: bool = True,
                elsewhere: Container[str] = ()) -> None:
    """Every listed file has its size and SHA-256 (but those checked ``elsewhere``); with ``strays``,
    nothing else is there."""
    wrong = {rel: size_problem(files.blob(rel), meta) for rel, meta in sorted(listed.items()) if rel not in elsewhere}
    digests = _sha256_all(files, [rel for rel, problem in wrong.items() if problem is None])
    for rel, problem in wrong.items():
        if problem:
            result.add("checksum", rel, False, problem)
        elif digests[rel] != listed[rel]["sha256"]:
            result.add("checksum", rel, False, "checksum mismatch")
        else:
            result.add("checksum", rel, True)
    for rel in files.names() if strays else ():
        if rel not in listed:
            result.add("checksum", rel, False, "file not in the manifest")


def _sha256_all(files: BackupFiles, names: list[str]) -> dict[str, str]:
    """The SHA-256 of each file, two at a time (a directory archive's files, or the objects of a
    backup in object storage, take about half the time)."""
    digests: dict[str, str] = {}

    def hash_one(name: str, _stop: threading.Event) -> None:
        digests[name] = _sha256(files.blob(name))

    for_each(names, hash_one, threads=2)
    return digests


def _sha256(blob: Blob) -> str:
    if blob.local is not None:
        return backup_store.sha256_file(blob.local)
    digest = hashlib.sha256()
    with blob.open() as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def size_problem(blob: Blob, meta: dict[str, Any]) -> str | None:
    size = blob.size()
    if size is None:
        return "missing"
    return None if size == meta["size"] else f"size {size}, manifest says {meta['size']}"


def verify(cfg: Config, *, root: Path | str | None = None, backup_id: str | None = None, latest: bool = False,
           restore_test: bool = False, progress: Progress = quiet, clock: Clock = utc_now) -> Verification:
    """Check a backup end to end; the result is also written to its ``verify.json``.

    A directory archive (``backup create --jobs``) that is encrypted or in object storage is read
    once, into a scratch directory (archive_transfer), where pg_restore then reads it. A Citus
    cluster's physical backup (local repository) is checked node by node (cluster_verify)."""
    found = _cluster_backup(cfg, root, backup_id, latest)
    if found is not None:
        return _verify_cluster(cfg, *found, restore_test=restore_test, progress=progress, clock=clock)
    with Scratch() as scratch:
        return _verify(cfg, root=root, backup_id=backup_id, latest=latest, restore_test=restore_test,
                       progress=progress, clock=clock, scratch=scratch)


def _verify(cfg: Config, *, root: Path | str | None, backup_id: str | None, latest: bool, restore_test: bool,
            progress: Progress, clock: Clock, scratch: Scratch) -> Verification:
    repo = open_repository(cfg, root)
    info = repo.find_backup(backup_id, latest=latest)
    files = repo.files(info)
    result = Verification(info.id)
    if info.manifest is None:
        result.add("manifest", backup_store.MANIFEST, False, str(info.problem))
        _record(repo, info, result, restore_test, clock)
        return result
    manifest = info.manifest
    result.add("manifest", backup_store.MANIFEST, True)
    if manifest.get("status") != "ok":
        result.add("status", info.id, False, f"status is {manifest.get('status')}: {manifest.get('error')}")
        _record(repo, info, result, restore_test, clock)
        return result
    key = backup_crypto.manifest_key(cfg, manifest)
    progress(f"verifying checksums of {info.id}")
    pg = manifest.get("postgres")
    fetched = (pg_dump_dir.archive_files(manifest, pg["file"]) if pg and pg_dump_dir.is_directory(pg)
               and (key is not None or files.blob(pg["file"]).local is None) else {})
    check_files(files, manifest.get("files") or {}, result, elsewhere=fetched)
    pg_source, pg_key = (files.blob(pg["file"]) if pg else None), key
    if pg and fetched:
        local = archive_transfer.fetch(files, fetched, pg["file"], key, scratch.path(), result.add,
                                       progress=progress)
        pg_source, pg_key = LocalBlob(local), None
    damaged = {c["subject"] for c in result.checks if c["ok"] is False}
    if manifest.get("kind") == "physical" and not damaged:
        physical_check.check(cfg, physical_location.of_repository(repo), info, restore_test=restore_test,
                             add=result.add, skip=result.skip, progress=progress)
    tools = None
    if pg and pg_source and not damaged & set(pg_dump_dir.archive_files(manifest, pg["file"])):
        progress("postgres: reading the archive with pg_restore")
        try:
            tools = find_tools(cfg)
            check_restore_tool(tools.pg_restore, tool_version(tools.pg_restore), pg.get("pg_dump_version"))
        except ConfigError as e:  # a tool to configure: the archive is not known to be damaged
            result.skip("pg_restore", pg["file"], e)
            tools = None
        if tools is not None:
            try:
                check_archive(tools, pg_source, pg_key, full=True, tables=pg["tables"])
                result.add("pg_restore", pg["file"], True)
            except CheckFailedError as e:
                result.add("pg_restore", pg["file"], False, e.message)
    mg = manifest.get("mongo")
    for coll in (mg or {}).get("collections", []):
        progress(f"mongo: reading {coll['bson_file']}")
        for rel, check in ((coll["metadata_file"], "metadata"), (coll["bson_file"], "bson")):
            if rel in damaged:
                continue
            try:
                if check == "metadata":
                    backup_mongo.read_metadata(files.blob(rel), key)
                    result.add(check, rel, True)
                    continue
                n = backup_mongo.count_file(files.blob(rel), key, decode=True)
            except Exception as e:  # any parse failure of a damaged file, whatever the layer
                result.add(check, rel, False, f"unreadable ({_reason(e)})")
                continue
            ok = n == coll["documents"]
            result.add(check, rel, ok, "" if ok else f"{n} documents, manifest says {coll['documents']}")
    if restore_test and result.state != "failed":
        # the PostgreSQL part only with a pg_restore that could read it
        _restore_test(cfg, files, manifest if tools else {**manifest, "postgres": None}, key, result, progress,
                      pg_source=pg_source, pg_key=pg_key)
    _record(repo, info, result, restore_test, clock)
    return result


def _cluster_backup(cfg: Config, root: Path | str | None, backup_id: str | None,
                    latest: bool) -> tuple[Path, BackupInfo] | None:
    """The cluster backup to verify: the one named, or with ``latest`` the newest complete one when it
    is newer than the newest complete backup outside ``cluster/``."""
    where = root if root is not None else cfg.backup.dir
    if isinstance(where, str) and is_url(where):  # cluster backups are local only: no S3 client made twice
        return None
    repo = LocalRepository(Path(where).expanduser())
    found = cluster_verify.find(repo.root, backup_id, latest)
    if found is None or not (latest or backup_id == "latest"):
        return (repo.root, found) if found is not None else None
    try:
        other = repo.find_backup(None, latest=True)
    except NotFoundError:
        return repo.root, found
    newer = other.time is not None and found.time is not None and other.time > found.time
    return None if newer else (repo.root, found)


def _verify_cluster(cfg: Config, root: Path, info: BackupInfo, *, restore_test: bool, progress: Progress,
                    clock: Clock) -> Verification:
    result = Verification(info.id)

    def files_ok(node: BackupInfo) -> bool:
        assert node.path is not None and node.manifest is not None
        checked = Verification(node.id)
        check_files(LocalFiles(node.path), node.manifest.get("files") or {}, checked)
        for c in checked.checks:
            result.add(c["check"], f"{node.id}/{c['subject']}", c["ok"], c["detail"])
        return checked.state != "failed"

    if info.manifest is None:
        result.add("manifest", f"{cluster.BACKUPS}/{info.id}.json", False, str(info.problem))
    else:
        cluster_verify.check(cfg, root, info.manifest, add=result.add, skip=result.skip, check_files=files_ok,
                             progress=progress)
    if restore_test and result.state != "failed" and info.manifest is not None:
        cluster_verify.run_restore_test(cfg, root, info.manifest, result.add, result.skip, progress)
    state = result.state
    with contextlib.suppress(OSError, DbcliError):  # a read-only medium: reported, not recorded
        cluster.write_verification(root, result.id, {
            "verified_at": iso(clock()), "state": state, "ok": None if state == "unverified" else state == "ok",
            "restore_test": restore_test, "problems": result.problems, "unverified": result.reasons,
            "dbcli_version": __version__})
    return result


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _restore_test(cfg: Config, files: BackupFiles, manifest: dict[str, Any], key: bytes | None,
                  result: Verification, progress: Progress, *, pg_source: Blob | None, pg_key: bytes | None) -> None:
    """Restore into scratch databases on the same servers, compare counts, drop them.

    What cannot be tried (no MongoDB configured, a server that does not answer, one older than the
    backup's, no right to create a database) leaves the part unverified; only damage fails it.
    """
    scratch = f"dbcli_verify_{uuid.uuid4().hex[:10]}"
    pg = manifest.get("postgres")
    if pg and pg_source:
        subject = f"postgres {scratch}"
        progress(f"postgres: restore test into scratch database {scratch}")
        try:
            server_num = server_version_num(cfg)
            check_target(pg.get("server_version"), server_num)
            _create_pg_database(cfg, scratch)
        except DbcliError as e:
            result.skip("restore-test", subject, e if isinstance(e, UnreachableError | ConfigError)
                        else ConfigError(f"cannot create a scratch database: {e.message}"))
        else:
            try:
                try:
                    done = pg_restore.restore(cfg, pg_source, key=pg_key, drop=False, tables=pg["tables"],
                                             large_objects=pg.get("large_objects"), dbname=scratch, no_owner=True,
                                             own_rows=pg.get("row_counts") == "own", server_num=server_num,
                                             progress=progress)
                    _compare(result, "restore-test", done.counts, lambda r: f"postgres {r['schema']}.{r['table']}")
                except BaseException:
                    # the restore's error is the one to report (a stuck server cannot drop it either)
                    with contextlib.suppress(DbcliError):
                        _drop_pg_database(cfg, scratch)
                    raise
                _drop_pg_database(cfg, scratch)
            except (UnreachableError, ConfigError) as e:
                result.skip("restore-test", subject, e)
            except DbcliError as e:
                result.add("restore-test", subject, False, e.message)
    mg = manifest.get("mongo")
    if mg:
        subject = f"mongo {scratch}"
        if not cfg.mongo.configured:
            result.skip("restore-test", subject, ConfigError(
                f"the backup has a MongoDB part and profile {cfg.profile} has no MongoDB",
                hint="verify under a profile with mongo.uri or mongo.embedded: true"))
            return
        progress(f"mongo: restore test into scratch database {scratch}")
        try:
            try:
                backup_mongo.restore(cfg, files, mg["collections"], key=key, drop=False, database=scratch,
                                     progress=progress)
                _compare(result, "restore-test", backup_mongo.restored_counts(cfg, mg["collections"], scratch),
                         lambda r: f"mongo {r['collection']}")
            finally:
                backup_mongo.drop_database(cfg, scratch)
        except (UnreachableError, ConfigError) as e:
            result.skip("restore-test", subject, e)
        except DbcliError as e:
            result.add("restore-test", subject, False, e.message)


def _compare(result: Verification, check: str, rows: list[dict[str, Any]],
             name: Callable[[dict[str, Any]], str]) -> None:
    for r in rows:
        ok = r["actual"] == r["expected"]
        result.add(check, name(r), ok, "" if ok else f"{r['actual']} rows restored, manifest says {r['expected']}")


def _create_pg_database(cfg: Config, name: str) -> None:
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        # template0: whatever a site added to template1 would make the scratch database "not empty"
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def _drop_pg_database(cfg: Config, name: str) -> None:
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _record(repo: Repository, info: BackupInfo, result: Verification, restore_test: bool, clock: Clock) -> None:
    # on a read-only backup medium (or a refused upload) the verdict is still reported, just not recorded
    with contextlib.suppress(OSError, *(() if isinstance(repo, LocalRepository) else (DbcliError,))):
        state = result.state
        repo.write_verification(info, {
            # ok stays true/false for readers older than state; null (unverified) is neither
            "verified_at": iso(clock()), "state": state, "ok": None if state == "unverified" else state == "ok",
            "restore_test": restore_test, "problems": result.problems, "unverified": result.reasons,
            "dbcli_version": __version__,
        })
