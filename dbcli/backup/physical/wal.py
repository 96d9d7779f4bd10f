"""The WAL archive of a backup repository: ``<repository>/wal/``, one file per segment.

``archive`` is what ``dbcli wal archive %p %f`` does as the server's archive_command: the segment is
copied to a temporary file in the archive, fsynced, and linked to its name, which fails if the name
exists, so two archivers never overwrite each other and a reader never sees half a segment. The same
segment again with the same content succeeds (PostgreSQL retries after a crash); different content
under a name already archived is refused (exit 7): the archive holds someone else's history.
pg_receivewal writes into the same directory (its current segment as ``<name>.partial``), unless
the archive is encrypted: with ``backup.encryption_key`` each file is stored encrypted under its own
name (wal_crypto), compared by the SHA-256 of its plain content, and decrypted by ``fetch``.
"""

from __future__ import annotations

import filecmp
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dbcli.backup.physical import wal_crypto
from dbcli.backup.store import disk_error, private_dir
from dbcli.errors import ConflictError, InvalidInputError, NotFoundError
from dbcli.fsutil import fsync_path

WAL_DIR = "wal"
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
# besides segments, PostgreSQL archives timeline history files and backup history files
ARCHIVABLE = re.compile(r"^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
STALE_TMP_S = 3600.0  # no archive run copies one segment for an hour
SEGMENTS_PER_XLOGID = 0x100000000 // (16 * 1024 * 1024)  # with the default 16 MB segment size


def wal_dir(root: Path) -> Path:
    return root / WAL_DIR


def archive(root: Path, source: Path, name: str, key: bytes | None = None) -> str:
    """Archive ``source`` as ``name`` (encrypted with ``key``): ``archived``, or ``already archived``
    for the same content again."""
    if not ARCHIVABLE.match(name):
        raise InvalidInputError(f"{name!r} is not a WAL file name")
    directory = wal_dir(root)
    target = directory / name
    if target.exists():
        return _same(source, target, name)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        private_dir(directory)
        digest = wal_crypto.sha256_of(source) if key is not None else ""
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            os.fchmod(dst.fileno(), 0o600)
            if key is not None:
                wal_crypto.seal(src, dst, key, digest)
            else:
                shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        try:
            os.link(tmp, target)  # fails if the name exists: an atomic "create only"
        except FileExistsError:
            return _same(source, target, name)
        fsync_path(directory)
    except FileNotFoundError as e:
        if not Path(source).exists():
            raise NotFoundError(f"no WAL file {source}") from None
        raise disk_error(e, target) from None
    except OSError as e:
        raise disk_error(e, target) from None
    finally:
        tmp.unlink(missing_ok=True)
    return "archived"


def _same(source: Path, target: Path, name: str) -> str:
    try:
        sealed = wal_crypto.read_header(target)
        same = (sealed.sha256 == wal_crypto.sha256_of(source) if sealed is not None
                else filecmp.cmp(source, target, shallow=False))
    except FileNotFoundError:
        raise NotFoundError(f"no WAL file {source}") from None
    if same:
        # a run killed after its link but before the fsyncs: this retry makes the segment durable
        try:
            fsync_path(target)
            fsync_path(target.parent)
        except OSError as e:
            raise disk_error(e, target) from None
        return "already archived"
    raise ConflictError(f"WAL file {name} is already archived in {target.parent} with different content",
                        hint="another server (or a restored copy) archives into this repository: "
                        "give each server its own backup.dir")


def fetch(root: Path, name: str, dest: Path, key: bytes | None = None) -> None:
    """Copy archived ``name`` to ``dest`` (restore_command), decrypted with ``key`` when it is
    encrypted; NotFoundError when it is not archived."""
    if not ARCHIVABLE.match(name):
        raise InvalidInputError(f"{name!r} is not a WAL file name")
    source = wal_dir(root) / name
    if not source.is_file():
        raise NotFoundError(f"WAL file {name} is not archived in {source.parent}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            wal_crypto.unseal(src, dst, key, name)
        os.replace(tmp, dest)  # the server never reads half a segment
    except OSError as e:
        raise disk_error(e, dest) from None
    finally:
        tmp.unlink(missing_ok=True)


def archive_command(root: Path) -> str:
    """The archive_command that runs ``dbcli wal archive`` with this Python, into ``root``."""
    return (f"{shlex.quote(sys.executable)} -m dbcli wal archive --dir {shlex.quote(str(root.resolve()))}"
            " %p %f")


def restore_command(root: Path) -> str:
    """A restore_command that copies from the archive (cp: no Python start per segment)."""
    wal = shlex.quote(str(wal_dir(root).resolve()))
    return f"test -f {wal}/%f && cp {wal}/%f %p"


# ---- what the archive holds --------------------------------------------------------------------

def segment_number(name: str) -> tuple[int, int]:
    """(timeline, segment number) of a segment name."""
    return int(name[:8], 16), int(name[8:16], 16) * SEGMENTS_PER_XLOGID + int(name[16:24], 16)


def segment_of(lsn: str, timeline: int) -> str:
    """The segment name holding ``lsn`` (``0/3000028``) on ``timeline``."""
    number = parse_lsn(lsn) // (16 * 1024 * 1024)
    return f"{timeline:08X}{number // SEGMENTS_PER_XLOGID:08X}{number % SEGMENTS_PER_XLOGID:08X}"


def parse_lsn(lsn: str) -> int:
    m = re.fullmatch(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})", lsn.strip())
    if not m:
        raise InvalidInputError(f"{lsn!r} is not an LSN (like 0/3000028)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class WalRange:
    """The unbroken run of archived segments from ``first``: recovery can replay up to ``end_lsn``."""

    first: str
    last: str
    end_lsn: str  # the end of ``last``: the furthest point a restore can reach with this archive
    gap_after: str | None  # the segment after which one is missing, if the run stops before the newest


def segments(root: Path) -> list[str]:
    directory = wal_dir(root)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if SEGMENT.match(p.name))


def reachable(names: list[str], start: str) -> WalRange | None:
    """The unbroken run of ``names`` from ``start`` (any timeline's segment number continues it)."""
    have = {segment_number(n)[1]: n for n in names if segment_number(n)[1] >= segment_number(start)[1]}
    number = segment_number(start)[1]
    if number not in have:
        return None
    while number + 1 in have:
        number += 1
    newest = max(have)
    end = format_lsn((number + 1) * 16 * 1024 * 1024)
    return WalRange(first=have[segment_number(start)[1]], last=have[number], end_lsn=end,
                    gap_after=have[number] if number < newest else None)


def prune_before(root: Path, first_needed: str) -> int:
    """Remove archived segments older than ``first_needed`` (history files stay), and temporary files
    of killed archive runs; how many segments."""
    needed = segment_number(first_needed)[1]
    removed = 0
    # what an archive_command killed between its copy and its link left (the server then retried)
    for stale in wal_dir(root).glob(".*.tmp"):
        if time.time() - stale.stat().st_mtime > STALE_TMP_S:
            stale.unlink(missing_ok=True)
    for name in segments(root):
        if segment_number(name)[1] < needed:
            (wal_dir(root) / name).unlink(missing_ok=True)
            removed += 1
    return removed
