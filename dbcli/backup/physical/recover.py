"""``backup restore --physical``: a base backup (or an incremental chain) and the archived WAL into a
NEW data directory, recovered to a time, an LSN or the end of the archive, started once and checked.

Everything happens in ``DIR.partial`` (a name no profile uses); only a recovered, checked and stopped
cluster is renamed to DIR, so a restore killed half-way never leaves a directory a user would start.
The recovered server keeps ``restore_command`` (reading the repository) and has archiving off: a copy
must not archive into its original's archive (``dbcli wal setup`` turns it on when it takes over).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import pwd
import shutil
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup import store as backup_store
from dbcli.backup.physical import base, base_crypto, fetch_command, fetch_s3, instance, location, tools
from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.stages import Progress, quiet, reached
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, DbcliError, NotFoundError, UsageError
from dbcli.fsutil import fsync_path
from dbcli.postgres import embedded

RECOVERY_TIMEOUT = 6 * 3600.0


def parse_time(text: str, *, assume_utc: bool = True) -> dt.datetime:
    """An ISO 8601 time; without a zone it is UTC (``assume_utc``), not the server's or this machine's
    zone: the one reading that cannot depend on where the restore runs."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--to-time {text!r} is not an ISO 8601 time (like 2026-12-07T15:04:05Z)") from None
    return when if when.tzinfo or not assume_utc else when.replace(tzinfo=dt.UTC)


def restore(cfg: Config, *, data_dir: Path, root: Path | str | None = None, backup_id: str | None = None,
            to_time: str | None = None, to_lsn: str | None = None, latest: bool = False,
            immediate: bool = False, progress: Progress = quiet, to_name: str | None = None,
            settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """Restore and recover into ``data_dir``; a summary with the time split and the profile to use.

    ``immediate``: recover only to the end of the backup (the restore test of ``backup verify``).
    ``to_name``: to a named restore point (a Citus cluster's, see cluster_restore); ``settings``:
    postgresql.conf lines the restored server gets besides the recovery settings."""
    if sum((to_time is not None, to_lsn is not None, latest, immediate, to_name is not None)) != 1:
        raise UsageError("give exactly one of --to-time, --to-lsn, --latest")
    where = location.open_root(cfg, root)
    when = parse_time(to_time) if to_time else None
    if when is not None and to_time is not None and parse_time(to_time, assume_utc=False).tzinfo is None:
        progress(f"--to-time {to_time} has no zone: recovering to {when.isoformat()} (UTC)")
    lsn = wal_archive.parse_lsn(to_lsn) if to_lsn else None
    data_dir = data_dir.expanduser().absolute()
    _check_target(data_dir)
    info = _choose(where, backup_id, when, lsn)
    chain = base.chain_of(where, info)
    keys = [base_crypto.key_of(cfg, b) for b in chain]  # a missing or other key: exit 3 before anything
    location.check_wal_key(where, cfg.backup.encryption_key)
    meta = info.manifest[base.KIND]  # type: ignore[index]
    if not isinstance(where, S3Repository):
        for b in chain:
            _check_files(b)
    bin_dir = tools.server_bin(int(meta["major"]), cfg.backup.pg_bin)
    partial = data_dir.with_name(data_dir.name + ".partial")
    work = data_dir.with_name(f".{data_dir.name}.chain")
    # a restore killed before: nothing there is anyone's data (its server may still run there)
    instance.stop_orphan(partial, bin_dir)
    for leftover in (partial, work):
        shutil.rmtree(leftover, ignore_errors=True)
    started = time.monotonic()
    try:
        with tools.removed_on_failure(partial):
            progress(f"extracting {info.id}" + (f" (a chain of {len(chain)})" if len(chain) > 1 else ""))
            sources = (fetch_s3.download_chain(where, chain, work, progress) if isinstance(where, S3Repository)
                       else [base.backup_dir(b) / base.BASE for b in chain])
            _extract_chain(cfg, chain, keys, sources, partial, work)
            owner = _restore_owner(wal_archive.wal_dir(where)) if isinstance(where, Path) else tools.server_owner()
            command, env = fetch_command.restore_command(cfg, where, work, owner)
            _write_recovery(partial, command, when, to_lsn, immediate,
                            [*instance.primary_settings(partial, bin_dir), *settings], to_name)
            tools.give_to(partial, owner)
            extracted = time.monotonic()
            progress("replaying WAL")
            log = data_dir.with_name(f".{data_dir.name}.recovery.log")
            try:
                with instance.started(partial, bin_dir, log, timeout=RECOVERY_TIMEOUT, env=env) as server:
                    reached("recovery")
                    state = instance.wait_promoted(server, timeout=RECOVERY_TIMEOUT)
                _history_ready(partial, int(str(state["timeline"])), owner)
            except DbcliError as e:
                if isinstance(e, CheckFailedError):
                    raise
                raise CheckFailedError(f"recovery failed: {instance.log_tail(log)}", hint=f"its log: {log}") from None
            replayed = time.monotonic()
            if data_dir.exists():
                data_dir.rmdir()  # checked empty above
            os.replace(partial, data_dir)
            fsync_path(data_dir.parent)
            log.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    target = (f"time {when.isoformat()}" if when else f"lsn {to_lsn}" if to_lsn else
              f"restore point {to_name}" if to_name else
              "end of backup" if immediate else "latest")
    return {"data_dir": str(data_dir), "backup": info.id, "chain": ",".join(b.id for b in chain),
            "target": target, "recovered_lsn": state["lsn"], "timeline": state["timeline"],
            "last_transaction_time": state["last_transaction_time"], "databases": state["databases"],
            "extract_s": round(extracted - started, 3), "replay_s": round(replayed - extracted, 3),
            "profile": f"postgres: {{embedded: true, data_dir: {data_dir}}}"}


def _restore_owner(wal: Path) -> pwd.struct_passwd | None:
    """As root, who runs the restored server: restore_command reads the archive's 0600 files, so the
    user that archives into it (the archive of a server running as ``postgres`` stays untouched);
    an archive of root's is given to the embedded server's user, as dbcli's own server would read it."""
    owner = tools.owner_of(wal)
    if owner is not None:
        return owner
    owner = tools.server_owner()
    if wal.is_dir():
        tools.give_to(wal, owner)
    return owner


def _history_ready(data_dir: Path, timeline: int, owner: pwd.struct_passwd | None) -> None:
    """Queue the new timeline's history file for archiving. The restore ran with archiving off, so
    the server did not; once archiving is on (into this repository, when the copy takes over), the
    history reaches the archive first: a later restore then follows this timeline with
    ``--latest`` and promotes to a new timeline number instead of reusing (and colliding with) it."""
    name = f"{timeline:08X}.history"
    status = data_dir / "pg_wal" / "archive_status"
    if timeline > 1 and (data_dir / "pg_wal" / name).is_file() and status.is_dir():
        marker = status / f"{name}.ready"
        if not (status / f"{name}.done").exists():
            marker.touch(mode=0o600)
            if owner is not None:  # not give_to: that opens the parents, and a data directory must stay 0700
                os.lchown(marker, owner.pw_uid, owner.pw_gid)


def _check_target(data_dir: Path) -> None:
    if embedded.running(data_dir) is not None or (data_dir / "postmaster.pid").exists():
        raise ConfigError(f"{data_dir} belongs to a running server: restore into a new directory")
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ConfigError(f"{data_dir} is not empty: restore into a new (or empty) directory")
    if not data_dir.parent.is_dir():
        raise ConfigError(f"no directory {data_dir.parent} to restore into")


def _choose(root: Root, backup_id: str | None, when: dt.datetime | None, lsn: int | None) -> BackupInfo:
    """The given backup, else the newest one that ends before the target."""
    if backup_id and backup_id != "latest":
        info = location.find_backup(root, backup_id)
        if not physical_chain.is_physical(info.manifest) or info.status != "ok":
            raise UsageError(f"backup {info.id} is not a complete physical backup")
        candidates = [info]
    else:
        candidates = list(reversed(physical_chain.physical_backups(root)))
        if not candidates:
            raise NotFoundError(f"no physical backup in {location.text(root)}", hint="dbcli backup create --physical")
    for info in candidates:
        meta = (info.manifest or {})[base.KIND]
        finished = backup_store.parse_iso(str((info.manifest or {}).get("finished_at")))
        if when is not None and finished > when:
            continue
        if lsn is not None and wal_archive.parse_lsn(meta["end_lsn"]) > lsn:
            continue
        return info
    wanted = "time" if when is not None else "LSN"
    raise NotFoundError(f"no physical backup in {location.text(root)} ends before the target {wanted}",
                        hint="a backup can only be recovered forward: pick a later target")


def _check_files(info: BackupInfo) -> None:
    for rel, meta in ((info.manifest or {}).get("files") or {}).items():
        path = base.backup_dir(info) / rel
        if not path.is_file():
            raise base.damaged(info, f"{rel} is missing")
        if path.stat().st_size != meta.get("size") or backup_store.sha256_file(path) != meta.get("sha256"):
            raise base.damaged(info, f"{rel}: checksum mismatch")


def _extract(info: BackupInfo, directory: Path, into: Path, key: bytes | None) -> None:
    """``directory``'s base.tar into ``into``, pg_wal.tar into its pg_wal (decrypted as they stream when
    encrypted); tablespaces are not supported yet."""
    tars = sorted(p.name for p in directory.iterdir() if ".tar" in p.name)
    others = [n for n in tars if not n.startswith(("base.tar", "pg_wal.tar"))]
    if others:
        raise ConfigError(f"backup {info.id} has tablespaces ({others[0]}): not supported by dbcli restore yet")
    backup_store.private_dir(into)
    for name in tars:
        dest = into / "pg_wal" if name.startswith("pg_wal") else into
        dest.mkdir(mode=0o700, exist_ok=True)
        if not name.endswith(base_crypto.SUFFIX):
            with tarfile.open(directory / name, "r:*") as tar:
                tar.extractall(dest, filter="tar")
            continue
        try:
            with base_crypto.open_plain(directory / name, key) as plain:
                _extract_stream(plain, name, dest)
        except backup_crypto.DecryptError as e:
            raise base.damaged(info, f"{name}: {e}") from None
    if not (into / "backup_manifest").exists():
        if base_crypto.is_sealed(directory):
            base_crypto.decrypt_file(info, directory / f"backup_manifest{base_crypto.SUFFIX}",
                                     into / "backup_manifest", key)
        else:
            shutil.copyfile(directory / "backup_manifest", into / "backup_manifest")


def _extract_stream(plain: IO[bytes], name: str, dest: Path) -> None:
    """A decrypted tar, read once front to back (tar's stream mode: never held in memory). gzip
    through GzipFile: pg_basebackup's gzip files may hold several members, which tar's stream
    mode would stop after the first of."""
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(gzip.GzipFile(fileobj=plain, mode="rb")) if ".gz" in name else plain
        with tarfile.open(fileobj=source, mode="r|") as tar:
            tar.extractall(dest, filter="tar")


def _extract_chain(cfg: Config, chain: list[BackupInfo], keys: list[bytes | None], sources: list[Path],
                   partial: Path, work: Path) -> None:
    if len(chain) == 1:
        _extract(chain[0], sources[0], partial, keys[0])
        return
    parts = []
    for n, info in enumerate(chain):
        parts.append(work / str(n))
        _extract(info, sources[n], parts[-1], keys[n])
    combine = tools.client(cfg, "pg_combinebackup")
    tools.run("pg_combinebackup", [str(combine), "--no-sync", "-o", str(partial), *map(str, parts)],
              timeout=RECOVERY_TIMEOUT)
    newest_wal = parts[-1] / "pg_wal"  # what the newest backup needs to reach consistency
    for segment in newest_wal.iterdir() if newest_wal.is_dir() else []:
        if segment.is_file():
            shutil.copy2(segment, partial / "pg_wal" / segment.name)


def _write_recovery(partial: Path, restore_command: str, when: dt.datetime | None, to_lsn: str | None,
                    immediate: bool, settings: list[str], to_name: str | None = None) -> None:
    lines = ["", "# written by dbcli backup restore --physical", *settings,
             f"restore_command = {instance.quote(restore_command)}",
             "recovery_target_action = 'promote'",
             "archive_mode = 'off'  # a restored copy must not archive into its original's archive"]
    if immediate:
        lines.append("recovery_target = 'immediate'")
    elif when is not None:
        lines.append(f"recovery_target_time = {instance.quote(when.isoformat())}")
    elif to_lsn is not None:
        lines.append(f"recovery_target_lsn = {instance.quote(to_lsn)}")
    elif to_name is not None:
        lines.append(f"recovery_target_name = {instance.quote(to_name)}")
    with open(partial / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    (partial / "recovery.signal").touch()
    for name in ("postmaster.pid", "postmaster.opts"):
        (partial / name).unlink(missing_ok=True)
