"""Where backups live: the backup directory, names, manifests, the lock, private files, leftovers.

Layout of a backup directory (``backup.dir``, default ``<data dir>/backups``)::

    .lock                                   flock'ed by create and prune; holds the holder's pid/host
    .partial-<id>/                          a backup being written (renamed to <id> when complete)
    .deleting-<id>/                         a backup being pruned (renamed first, then removed)
    20261129T101500Z-local-nightly/
        manifest.json                       what is in it, counts, sizes, SHA-256, status
        verify.json                         the last verification (a sidecar, rewritten atomically)
        postgres/<dbname>.dump              pg_dump -Fc
        mongo/<db>/<coll>.bson.gz           mongodump layout (--gzip)
        mongo/<db>/<coll>.metadata.json.gz

A run killed at any point leaves at most a ``.partial-*`` directory, which nothing lists and the
next create or prune (holding the lock, so no live writer can own it) removes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from dbcli.config.model import Config
from dbcli.errors import DbcliError, LockedError, NotFoundError, UsageError
from dbcli.fsutil import atomic_write, write_error

MANIFEST = "manifest.json"
VERIFY = "verify.json"
LOCK = ".lock"
PARTIAL = ".partial-"
DELETING = ".deleting-"
FORMAT_VERSION = 1
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID_TIME = "%Y%m%dT%H%M%SZ"

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def root_dir(cfg: Config, override: str | None = None) -> Path:
    """The backup directory: ``--dir``, else ``backup.dir`` (default ``<data dir>/backups``); not a URL."""
    where = override or cfg.backup.dir
    if isinstance(where, str) and "://" in where:  # an s3:// repository: see repo_open
        raise UsageError(f"{where} is not a local backup directory")
    return Path(where).expanduser()


def ensure_root(root: Path) -> Path:
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # new backup roots are private whatever the umask
    return root


def _in_dir(root: Path, name: str) -> bool:
    return (root / name).exists() or (root / f"{PARTIAL}{name}").exists()


def new_id(profile: str, tag: str | None, when: dt.datetime, root: Path | Callable[[str], bool]) -> str:
    """``20261129T101500Z-<profile>[-<tag>]``, ``-2``, ``-3``... if taken (in ``root``, or by ``root(id)``)."""
    if tag is not None and not _TAG.match(tag):
        raise UsageError(f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 64)")
    safe_profile = re.sub(r"[^A-Za-z0-9_.-]", "_", profile)
    base = f"{when.astimezone(dt.UTC).strftime(_ID_TIME)}-{safe_profile}" + (f"-{tag}" if tag else "")
    candidate, n = base, 1
    taken = root if callable(root) else partial(_in_dir, root)
    while taken(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


# ---- disk faults -------------------------------------------------------------------------------

def disk_error(e: OSError, path: Path) -> DbcliError:
    """A refused write as fsutil maps it: exit 73 (read-only, permission), 74 (space, quota, size), else 1."""
    return write_error(e, e.filename or path) or DbcliError(f"cannot write {path}: {e.strerror or e}")


# ---- private files -----------------------------------------------------------------------------

def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 (explicitly: mkdir's mode is filtered by the umask)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o700)
    return path


def open_private(path: Path) -> IO[bytes]:
    """A new file, mode 0600 whatever the umask, for binary writing."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- manifest ----------------------------------------------------------------------------------

def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_checksum(data: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content without its own checksum: a changed value is detected."""
    return "sha256:" + hashlib.sha256(_canonical({k: v for k, v in data.items() if k != "checksum"})).hexdigest()


def write_manifest(directory: Path, data: dict[str, Any]) -> None:
    body = {**data, "checksum": manifest_checksum(data)}
    with atomic_write(directory / MANIFEST, private=True) as fh:
        fh.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


class ManifestError(Exception):
    pass


class UnsafeEntryError(ManifestError):
    """A manifest entry names a path outside its backup directory (absolute, ``..``, a symlink out)."""


def entry_paths(data: dict[str, Any]) -> list[Any]:
    """Every path the manifest names: its file list and the files of its PostgreSQL and MongoDB parts."""
    paths: list[Any] = list(data.get("files") or {})
    pg = data.get("postgres")
    if isinstance(pg, dict) and "file" in pg:
        paths.append(pg["file"])
    mg = data.get("mongo")
    for coll in (mg.get("collections") or []) if isinstance(mg, dict) else []:
        if isinstance(coll, dict):
            paths += [coll.get(k) for k in ("bson_file", "metadata_file") if k in coll]
    return paths


def check_entries(directory: Path | None, data: dict[str, Any]) -> None:
    """UnsafeEntryError unless every path the manifest names stays inside ``directory`` (None: by name).

    A manifest's checksum proves nothing against someone who rewrites it (anyone can recompute it),
    so what it names is checked before anything is read, restored or removed by it.
    """
    base = directory.resolve() if directory is not None else None
    for rel in entry_paths(data):
        if not isinstance(rel, str) or not rel or "\0" in rel:
            raise UnsafeEntryError(f"manifest entry {rel!r} is not a file name")
        pure = Path(rel)
        if pure.is_absolute() or ".." in pure.parts or (base and not (base / pure).resolve().is_relative_to(base)):
            raise UnsafeEntryError(f"manifest entry {rel!r} escapes the backup directory")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest, its checksum checked; ManifestError says what is wrong."""
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise ManifestError("manifest.json is missing") from None
    except OSError as e:
        raise ManifestError(f"manifest.json is unreadable: {e.strerror}") from None
    return parse_manifest(raw, directory)


def parse_manifest(raw: bytes, directory: Path | None) -> dict[str, Any]:
    """A manifest from its bytes, its checksum and entries checked (see check_entries)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ManifestError("manifest.json is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("checksum"), str):
        raise ManifestError("manifest.json has no checksum")
    if data["checksum"] != manifest_checksum(data):
        raise ManifestError("manifest.json checksum mismatch")
    check_entries(directory, data)
    return data


def write_verification(directory: Path, result: dict[str, Any]) -> None:
    with atomic_write(directory / VERIFY, private=True) as fh:
        fh.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def read_verification(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / VERIFY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- listing -----------------------------------------------------------------------------------

@dataclass
class BackupInfo:
    id: str
    path: Path | None  # the backup's directory; None for a backup in object storage
    manifest: dict[str, Any] | None
    problem: str | None = None  # why the manifest could not be read
    verification: dict[str, Any] | None = None
    time: dt.datetime | None = field(default=None)
    unsafe: bool = False  # the manifest names a path outside the backup (UnsafeEntryError)

    @property
    def status(self) -> str:
        if self.manifest is None:
            return "invalid"
        return str(self.manifest.get("status", "invalid"))

    @property
    def verified(self) -> str | None:
        """The last verification's state (see ``verification_state``); None if never verified."""
        return verification_state(self.verification)

    @property
    def good(self) -> bool:
        """Complete, and not failed by its last verification (unverified is not failed)."""
        return self.status == "ok" and self.verified != "failed"


def verification_state(record: dict[str, Any] | None) -> str | None:
    """``ok``, ``failed`` or ``unverified`` from a verify.json record (records written before the
    ``state`` key: from their ``ok``); None when there is no record."""
    if not record:
        return None
    state = record.get("state")
    if state in ("ok", "failed", "unverified"):
        return str(state)
    return "ok" if record.get("ok") is True else "failed"


def id_time(name: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(name[:16], _ID_TIME).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def backup_ids(root: Path) -> list[str]:
    """The ids of the backup directories, by name alone (no manifest is read)."""
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir()
                  if not e.name.startswith(".") and id_time(e.name) is not None and e.is_dir())


def list_backups(root: Path) -> list[BackupInfo]:
    """Every backup directory (oldest first); temporary and hidden entries are skipped."""
    if not root.is_dir():
        return []
    found: list[BackupInfo] = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir() or id_time(entry.name) is None:
            continue
        found.append(backup_info(entry.name, entry, partial(read_manifest, entry), read_verification(entry)))
    return sorted_backups(found)


def backup_info(backup_id: str, path: Path | None, manifest: Callable[[], dict[str, Any]],
                verification: dict[str, Any] | None) -> BackupInfo:
    """What ``backup list`` knows of a backup: its manifest (``manifest()`` reads it) or why not."""
    info = BackupInfo(id=backup_id, path=path, manifest=None)
    try:
        info.manifest = manifest()
    except ManifestError as e:
        info.problem = str(e)
        info.unsafe = isinstance(e, UnsafeEntryError)
    info.verification = verification
    started = info.manifest.get("started_at") if info.manifest else None
    info.time = parse_iso(started) if isinstance(started, str) else id_time(backup_id)
    return info


def sorted_backups(found: list[BackupInfo]) -> list[BackupInfo]:
    return sorted(found, key=lambda b: (b.time or dt.datetime.min.replace(tzinfo=dt.UTC), b.id))


def find_backup(root: Path, backup_id: str | None, *, latest: bool = False, kind: str | None = None) -> BackupInfo:
    """A backup by id (``latest``: the newest complete one, of ``kind`` when given)."""
    return pick_backup(list_backups(root), backup_id, latest=latest, where=str(root), kind=kind,
                       incomplete=partial(_in_dir, root))


def pick_backup(backups: list[BackupInfo], backup_id: str | None, *, latest: bool, where: str,
                incomplete: Callable[[str], bool], kind: str | None = None) -> BackupInfo:
    """``backup_id``, or the newest complete one (of ``kind``); ``incomplete(id)``: an unfinished one has that id."""
    if latest or backup_id == "latest":
        ok = [b for b in backups if b.status == "ok" and kind in (None, (b.manifest or {}).get("kind", "logical"))]
        if not ok:
            raise NotFoundError(f"no complete {kind + ' ' if kind else ''}backup in {where}")
        return ok[-1]
    if not backup_id:
        raise UsageError("give a backup id or --latest")
    for b in backups:
        if b.id == backup_id:
            return b
    if incomplete(backup_id):
        raise NotFoundError(f"backup {backup_id} is not a complete backup directory")
    raise NotFoundError(f"no backup {backup_id!r} in {where}")


def data_files(directory: Path) -> Iterator[Path]:
    """The files a manifest accounts for: everything but the manifest, the sidecar and temp files."""
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and str(rel) not in (MANIFEST, VERIFY) and not rel.name.startswith("."):
            yield path


# ---- lock and leftovers ------------------------------------------------------------------------

@contextmanager
def locked(root: Path, what: str, clock: Clock = utc_now) -> Iterator[None]:
    """Hold ``<root>/.lock`` (flock, non-blocking); a second holder gets LockedError (exit 75).

    A directory that cannot be created or written is a disk_error (exit 73), before anything is written.
    """
    try:
        ensure_root(root)
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise disk_error(e, root) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another backup run holds {root / LOCK} ({_holder(fd)})",
                              hint="wait for it to finish") from None
        holder = {"pid": os.getpid(), "host": os.uname().nodename, "started_at": iso(clock()), "command": what}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError as e:
            raise disk_error(e, root) from None
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock; so does the process dying


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"{data['command']} by pid {data['pid']} on {data['host']} since {data['started_at']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "holder unknown"


def clean_leftovers(root: Path) -> list[str]:
    """Remove ``.partial-*`` and ``.deleting-*`` directories; call only while holding the lock."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith((PARTIAL, DELETING)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def remove_backup(path: Path) -> None:
    """Rename first so a crash half-way never leaves a half backup under its id."""
    doomed = path.with_name(f"{DELETING}{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)
