"""Backups for cron: create, list, verify and restore (prune lives in backup_prune).

Every step is checked: a dump that is empty, truncated or unreadable is an error, not a backup;
a backup is written under ``.partial-<id>`` and renamed to ``<id>`` only once its manifest (counts,
sizes, SHA-256 of every file) is on disk; ``verify`` re-reads everything and can restore it into
scratch databases. See backup_store for the directory layout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli import __version__
from dbcli.backup import crypto as backup_crypto
from dbcli.backup import store as backup_store
from dbcli.backup.store import Clock, iso, utc_now
from dbcli.config.load import Config
from dbcli.errors import CheckFailedError, ConfigError, ConflictError, DbcliError, NotFoundError, UsageError
from dbcli.fsutil import fsync_path
from dbcli.output import Output

Progress = Callable[[str], None]
TARGETS = ("postgres", "mongo", "all")
# gzip level 1: in bench/bench_backup.py it dumps as fast as level 0 (less to write) at a fraction
# of the size, and far faster than level 6 for a few percent more bytes (README, "Backups", Performance)
DEFAULT_COMPRESSION = 1


def _quiet(_message: str) -> None:
    pass


def _pause(stage: str) -> None:
    """Test hook: with DBCLI_BACKUP_TEST_PAUSE=<stage>, stop at that stage for a while.

    Stages: ``locked`` (lock taken), ``pg_dump`` (pg_dump running, rows counted), ``mongo`` (first
    document of a collection written), ``manifest`` (manifest written, not yet renamed),
    ``pg_restore`` (a restore's first block of SQL sent to psql). The tests use it to SIGKILL a
    create or restore at a known point and to hold the lock; it prints a line to stderr first.
    Seconds: DBCLI_BACKUP_TEST_PAUSE_SECONDS (default 30).
    """
    if os.environ.get("DBCLI_BACKUP_TEST_PAUSE") == stage:
        print(f"dbcli-test: paused at {stage}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("DBCLI_BACKUP_TEST_PAUSE_SECONDS", "30")))


def compression_level(cfg: Config) -> int:
    level = cfg.get("backup.compression")
    if level is None:
        return DEFAULT_COMPRESSION
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 9:
        raise ConfigError(f"backup.compression must be an integer from 0 to 9, got {level!r}")
    return level


def resolve_targets(cfg: Config, target: str) -> list[str]:
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    if target == "all":
        return ["postgres", "mongo"] if cfg.mongo.configured else ["postgres"]
    if target == "mongo" and not cfg.mongo.configured:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return [target]


# ---- create ------------------------------------------------------------------------------------

def create(cfg: Config, *, target: str = "all", root: Path | None = None, tag: str | None = None,
           progress: Progress = _quiet, clock: Clock = utc_now) -> dict[str, Any]:
    """Write one complete, checksummed backup; returns its summary. Exit 75 if another run holds the lock."""
    from dbcli.backup import pg as backup_pg

    root = root or backup_store.root_dir(cfg)
    targets = resolve_targets(cfg, target)
    key = backup_crypto.load_key(cfg)
    level = compression_level(cfg)
    with backup_store.locked(root, "backup create", clock):
        _pause("locked")
        cleaned = backup_store.clean_leftovers(root)
        started = clock()
        backup_id = backup_store.new_id(cfg.profile, tag, started, root)
        partial = backup_store.private_dir(root / f"{backup_store.PARTIAL}{backup_id}")
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
                res = backup_pg.dump(cfg, partial / "postgres", compression=level, key=key,
                                     progress=progress, pause=_pause)
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
                from dbcli.backup import mongo as backup_mongo

                name, server, colls = backup_mongo.dump(cfg, partial / "mongo", partial, compression=level,
                                                        key=key, progress=progress, pause=_pause)
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
            _pause("manifest")
            os.replace(partial, root / backup_id)
            fsync_path(root)
        except Exception as e:
            _record_failure(root, partial, backup_id, manifest, e, clock)
            if isinstance(e, OSError):
                raise DbcliError(f"cannot write backup {backup_id}: {e.strerror or e}") from e
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
    except OSError:
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


# ---- list --------------------------------------------------------------------------------------

LIST_COLUMNS = ["id", "time", "targets", "size", "age", "status", "verified"]


def list_rows(root: Path, clock: Clock = utc_now) -> list[dict[str, Any]]:
    now = clock()
    rows = []
    for b in backup_store.list_backups(root):
        m = b.manifest or {}
        files = m.get("files") or {}
        rows.append({
            "id": b.id,
            "time": iso(b.time) if b.time else None,
            "targets": ",".join(m.get("targets") or []) or None,
            "size": human_size(sum(f.get("size", 0) for f in files.values())) if b.manifest else None,
            "age": human_age(now - b.time) if b.time else None,
            "status": b.status if b.manifest else f"invalid: {b.problem}",
            "verified": _verified_text(b.verification),
        })
    return rows


def _verified_text(v: dict[str, Any] | None) -> str:
    if not v:
        return "never"
    text = ("ok" if v.get("ok") else "FAILED") + f" {v.get('verified_at', '?')}"
    if v.get("restore_test"):
        text += " (restore-test)"
    if not v.get("ok") and v.get("problems"):
        text += f": {v['problems'][0]}"
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


# ---- verify ------------------------------------------------------------------------------------

@dataclass
class Verification:
    id: str
    ok: bool = True
    checks: list[dict[str, Any]] = field(default_factory=list)

    def add(self, check: str, subject: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"check": check, "subject": subject, "ok": ok, "detail": detail})
        if not ok:
            self.ok = False

    @property
    def problems(self) -> list[str]:
        return [f"{c['subject']}: {c['detail']}" for c in self.checks if not c["ok"]]

    def raise_if_failed(self) -> None:
        if not self.ok:
            problems = self.problems
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CheckFailedError(f"backup {self.id} failed verification: {problems[0]}{more}")


def _key_for(cfg: Config, manifest: dict[str, Any]) -> bytes | None:
    enc = manifest.get("encryption")
    if not enc:
        return None
    key = backup_crypto.load_key(cfg)
    if key is None:
        raise ConfigError(f"backup {manifest['id']} is encrypted but backup.encryption_key is not set")
    if backup_crypto.key_id(key) != enc.get("key_id"):
        raise ConfigError(f"backup.encryption_key is not the key backup {manifest['id']} was made with "
                          f"(key id {enc.get('key_id')})")
    return key


def check_files(directory: Path, listed: dict[str, Any], result: Verification, *, strays: bool = True) -> None:
    """Every listed file has its size and SHA-256; with ``strays``, nothing else is there."""
    for rel, meta in sorted(listed.items()):
        path = directory / rel
        wrong = _size_problem(path, meta)
        if wrong:
            result.add("checksum", rel, False, wrong)
        elif backup_store.sha256_file(path) != meta["sha256"]:
            result.add("checksum", rel, False, "checksum mismatch")
        else:
            result.add("checksum", rel, True)
    for path in backup_store.data_files(directory) if strays else ():
        rel = str(path.relative_to(directory))
        if rel not in listed:
            result.add("checksum", rel, False, "file not in the manifest")


def _size_problem(path: Path, meta: dict[str, Any]) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    return None if size == meta["size"] else f"size {size}, manifest says {meta['size']}"


def verify(cfg: Config, *, root: Path | None = None, backup_id: str | None = None, latest: bool = False,
           restore_test: bool = False, progress: Progress = _quiet, clock: Clock = utc_now) -> Verification:
    """Check a backup end to end; the result is also written to its ``verify.json``."""
    from dbcli.backup import mongo as backup_mongo
    from dbcli.backup import pg as backup_pg

    root = root or backup_store.root_dir(cfg)
    info = backup_store.find_backup(root, backup_id, latest=latest)
    result = Verification(info.id)
    if info.manifest is None:
        result.add("manifest", backup_store.MANIFEST, False, str(info.problem))
        _record(info.path, result, restore_test, clock)
        return result
    manifest = info.manifest
    result.add("manifest", backup_store.MANIFEST, True)
    if manifest.get("status") != "ok":
        result.add("status", info.id, False, f"status is {manifest.get('status')}: {manifest.get('error')}")
        _record(info.path, result, restore_test, clock)
        return result
    key = _key_for(cfg, manifest)
    progress(f"verifying checksums of {info.id}")
    check_files(info.path, manifest.get("files") or {}, result)
    damaged = {c["subject"] for c in result.checks if not c["ok"]}
    pg = manifest.get("postgres")
    if pg and pg["file"] not in damaged:
        progress("postgres: reading the archive with pg_restore")
        try:
            tools = backup_pg.find_tools(cfg)
            backup_pg.check_archive(tools, info.path / pg["file"], key, full=True, tables=pg["tables"])
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
                    backup_mongo.read_metadata(info.path / rel, key)
                    result.add(check, rel, True)
                    continue
                n = backup_mongo.count_file(info.path / rel, key, decode=True)
            except Exception as e:  # any parse failure of a damaged file, whatever the layer
                result.add(check, rel, False, f"unreadable ({_reason(e)})")
                continue
            ok = n == coll["documents"]
            result.add(check, rel, ok, "" if ok else f"{n} documents, manifest says {coll['documents']}")
    if restore_test and result.ok:
        _restore_test(cfg, info.path, manifest, key, result, progress)
    _record(info.path, result, restore_test, clock)
    return result


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _restore_test(cfg: Config, directory: Path, manifest: dict[str, Any], key: bytes | None,
                  result: Verification, progress: Progress) -> None:
    """Restore into scratch databases on the same servers, compare counts, drop them."""
    from dbcli.backup import mongo as backup_mongo
    from dbcli.backup import pg as backup_pg

    scratch = f"dbcli_verify_{uuid.uuid4().hex[:10]}"
    pg = manifest.get("postgres")
    if pg:
        progress(f"postgres: restore test into scratch database {scratch}")
        try:
            _create_pg_database(cfg, scratch)
            try:
                done = backup_pg.restore(cfg, directory / pg["file"], key=key, drop=False, tables=pg["tables"],
                                         large_objects=pg.get("large_objects"), dbname=scratch, no_owner=True,
                                         own_rows=pg.get("row_counts") == "own", progress=progress)
                _compare(result, "restore-test", done.counts, lambda r: f"postgres {r['schema']}.{r['table']}")
            finally:
                _drop_pg_database(cfg, scratch)
        except DbcliError as e:
            result.add("restore-test", f"postgres {scratch}", False, e.message)
    mg = manifest.get("mongo")
    if mg:
        progress(f"mongo: restore test into scratch database {scratch}")
        try:
            try:
                backup_mongo.restore(cfg, directory, mg["collections"], key=key, drop=False, database=scratch,
                                     progress=progress)
                _compare(result, "restore-test", backup_mongo.restored_counts(cfg, mg["collections"], scratch),
                         lambda r: f"mongo {r['collection']}")
            finally:
                backup_mongo.drop_database(cfg, scratch)
        except DbcliError as e:
            result.add("restore-test", f"mongo {scratch}", False, e.message)


def _compare(result: Verification, check: str, rows: list[dict[str, Any]],
             name: Callable[[dict[str, Any]], str]) -> None:
    for r in rows:
        ok = r["actual"] == r["expected"]
        result.add(check, name(r), ok, "" if ok else f"{r['actual']} rows restored, manifest says {r['expected']}")


def _create_pg_database(cfg: Config, name: str) -> None:
    from psycopg import sql

    from dbcli.postgres import connection as postgres

    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        # template0: whatever a site added to template1 would make the scratch database "not empty"
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def _drop_pg_database(cfg: Config, name: str) -> None:
    from psycopg import sql

    from dbcli.postgres import connection as postgres

    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _record(directory: Path, result: Verification, restore_test: bool, clock: Clock) -> None:
    # on a read-only backup medium the verdict is still reported, just not recorded
    with contextlib.suppress(OSError):
        backup_store.write_verification(directory, {
            "verified_at": iso(clock()), "ok": result.ok, "restore_test": restore_test,
            "problems": result.problems, "dbcli_version": __version__,
        })


# ---- restore -----------------------------------------------------------------------------------

def restore(source_cfg: Config, target_cfg: Config, *, backup_id: str, root: Path | None = None,
            target: str = "all", drop: bool = False, no_owner: bool = False,
            progress: Progress = _quiet) -> list[dict[str, Any]]:
    """Restore a backup into ``target_cfg``'s servers; rows of expected and restored counts.

    Refuses a non-empty target without ``drop`` (exit 7) and a damaged backup (exit 8); the caller
    turns a count mismatch into exit 8 (see ``mismatches``).
    """
    from dbcli.backup import mongo as backup_mongo
    from dbcli.backup import pg as backup_pg

    root = root or backup_store.root_dir(source_cfg)
    info = backup_store.find_backup(root, backup_id)
    if info.manifest is None:
        raise CheckFailedError(f"backup {info.id} is damaged: {info.problem}")
    manifest = info.manifest
    if manifest.get("status") != "ok":
        raise CheckFailedError(f"backup {info.id} is not complete (status {manifest.get('status')})")
    parts = [t for t in ("postgres", "mongo") if manifest.get(t)]
    if target != "all":
        if target not in TARGETS:
            raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
        if target not in parts:
            raise NotFoundError(f"backup {info.id} has no {target} dump")
        parts = [target]
    key = _key_for(source_cfg, manifest)
    progress(f"checking {info.id} before restoring")
    check = Verification(info.id)
    wanted = set()
    for c in (manifest.get("mongo") or {}).get("collections", []) if "mongo" in parts else []:
        wanted |= {c["bson_file"], c["metadata_file"]}
    check_files(info.path, {k: v for k, v in manifest["files"].items() if k in wanted}, check, strays=False)
    if "postgres" in parts:
        # the dump's size now; its checksum while pg_restore reads it, before anything is committed
        dump = manifest["postgres"]["file"]
        wrong = _size_problem(info.path / dump, manifest["files"][dump])
        if wrong:
            check.add("checksum", dump, False, wrong)
    if check.problems:
        raise CheckFailedError(f"backup {info.id} is damaged: {check.problems[0]}")
    # refuse before changing anything, whichever target is not empty (PostgreSQL checks again
    # inside its restore transaction, which is enough when it is the only target)
    if not drop:
        from dbcli.postgres import connection as postgres

        if "postgres" in parts and "mongo" in parts:
            with postgres.connect(target_cfg, autocommit=True) as conn, postgres.errors_translated(target_cfg):
                if backup_pg.target_has_tables(conn):
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
            try:
                done = backup_pg.restore(target_cfg, info.path / pg["file"], key=key, drop=drop,
                                         tables=pg["tables"], sha256=manifest["files"][pg["file"]]["sha256"],
                                         large_objects=pg.get("large_objects"), no_owner=no_owner,
                                         own_rows=pg.get("row_counts") == "own", progress=progress, pause=_pause)
            except backup_pg.DamagedArchive as e:
                raise CheckFailedError(f"backup {info.id} is damaged: {pg['file']}: {e.detail}",
                                       hint="nothing was restored") from None
            rows += [{"target": "postgres", "name": f"{r['schema']}.{r['table']}", "expected": r["expected"],
                      "restored": r["actual"], "rolled_back": not done.committed} for r in done.counts]
            if not done.committed:
                return _checked(rows)  # the database is as it was: the mongo part is not started either
        if "mongo" in parts:
            mg = manifest["mongo"]
            backup_mongo.restore(target_cfg, info.path, mg["collections"], key=key, drop=drop, progress=progress)
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


# ---- demo --------------------------------------------------------------------------------------

def demo_step(cfg: Config, out: Output) -> None:
    """Back up the demo data into ``<data dir>/backups`` and verify the backup."""
    root = cfg.data_dir / "backups"
    out.info(f"backup: creating a backup of the demo data in {root}")
    made = create(cfg, target="all", root=root, tag="demo", progress=out.info)
    out.info(f"backup: {made['id']}: {made['tables']} tables ({made['rows']} rows), "
             f"{made['collections']} collections ({made['documents']} documents), {human_size(made['size_bytes'])}")
    checked = verify(cfg, root=root, backup_id=made["id"], progress=out.info)
    out.rows([{"backup": made["id"], "check": c["check"], "subject": c["subject"], "ok": c["ok"]}
              for c in checked.checks], ["backup", "check", "subject", "ok"], title="backup verification")
    checked.raise_if_failed()
    out.info(f"backup: list them with: dbcli backup list --dir {root}")
