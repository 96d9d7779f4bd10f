"""The WAL archive of an S3 repository: ``<prefix>/wal/<name>``, one object per segment.

``archive`` uploads with a conditional PUT (``If-None-Match: *``): of two archivers, one creates the
object and the other is told it exists, so nothing is overwritten. A name already there is compared
by SHA-256 (kept as the object's ``sha256`` metadata; the bytes themselves when it has none): the
same content succeeds (PostgreSQL retries after a crash), different content is refused (exit 7). A
server that ignores the condition is caught by reading the object back after the PUT.

With ``backup.encryption_key`` the object is the encrypted file wal_crypto describes (the ``sha256``
metadata stays the plain content's); it is sealed into a temporary file (ciphertext only) first, as
a PUT needs its length.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical import wal_crypto
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.s3_client import S3Location, error_code, translate, translated
from dbcli.backup.s3_io import delete_objects, list_objects
from dbcli.backup.store import disk_error
from dbcli.errors import ConflictError, InvalidInputError, NotFoundError

CHUNK = 1 << 20


def wal_location(repo: S3Repository) -> S3Location:
    return S3Location(repo.location_.bucket, repo.location_.key(wal_archive.WAL_DIR))


def _stored_sha256(repo: S3Repository, key: str) -> str | None:
    """The archived object's SHA-256 (from its metadata, else from its bytes); None when absent."""
    where = wal_location(repo)
    try:
        head = repo.client.head_object(Bucket=where.bucket, Key=key)
    except Exception as e:
        if error_code(e) == "NoSuchKey":
            return None
        raise translate(e, where.url) or e from None
    known = (head.get("Metadata") or {}).get("sha256")
    if known:
        return str(known)
    with translated(where.url):
        body = repo.client.get_object(Bucket=where.bucket, Key=key)["Body"]
        head_bytes = body.read(wal_crypto.HEADER_SIZE)
        sealed = wal_crypto.parse_header(head_bytes)
        if sealed is not None:
            return sealed.sha256
        digest = hashlib.sha256(head_bytes)
        while chunk := body.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _compare(repo: S3Repository, key: str, name: str, digest: str) -> str:
    stored = _stored_sha256(repo, key)
    if stored is None:
        raise ConflictError(f"WAL file {name} vanished from {wal_location(repo).url} while being archived")
    if stored == digest:
        return "already archived"
    raise ConflictError(f"WAL file {name} is already archived in {wal_location(repo).url} with different content",
                        hint="another server (or a restored copy) archives into this repository: "
                        "give each server its own backup.dir")


def archive(repo: S3Repository, source: Path, name: str, secret: bytes | None = None) -> str:
    """Archive ``source`` as ``name`` (encrypted with ``secret``): ``archived``, or ``already archived``
    for the same content again."""
    if not wal_archive.ARCHIVABLE.match(name):
        raise InvalidInputError(f"{name!r} is not a WAL file name")
    where = wal_location(repo)
    key = where.key(name)
    try:
        digest = wal_crypto.sha256_of(source)
        if _stored_sha256(repo, key) is not None:
            return _compare(repo, key, name, digest)
        with open(source, "rb") as plain, tempfile.TemporaryFile() as sealed:
            body: IO[bytes] = plain
            if secret is not None:
                wal_crypto.seal(plain, sealed, secret, digest)
                sealed.seek(0)
                body = sealed
            try:
                repo.client.put_object(Bucket=where.bucket, Key=key, Body=body, IfNoneMatch="*",
                                       Metadata={"sha256": digest})
            except Exception as e:
                if error_code(e) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return _compare(repo, key, name, digest)  # another archiver was first
                raise translate(e, where.url, writing=True) or e from None
    except FileNotFoundError:
        raise NotFoundError(f"no WAL file {source}") from None
    except OSError as e:  # the temporary file's disk
        raise disk_error(e, Path(tempfile.gettempdir())) from None
    _compare(repo, key, name, digest)  # a server that ignored If-None-Match: what is there now is ours
    return "archived"


def fetch(repo: S3Repository, name: str, dest: Path, secret: bytes | None = None) -> None:
    """Download archived ``name`` to ``dest`` (restore_command), decrypted with ``secret`` when it is
    encrypted; NotFoundError when it is not archived."""
    if not wal_archive.ARCHIVABLE.match(name):
        raise InvalidInputError(f"{name!r} is not a WAL file name")
    where = wal_location(repo)
    try:
        body = repo.client.get_object(Bucket=where.bucket, Key=where.key(name))["Body"]
    except Exception as e:
        if error_code(e) == "NoSuchKey":
            raise NotFoundError(f"WAL file {name} is not archived in {where.url}") from None
        raise translate(e, where.url) or e from None
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with translated(where.url), open(tmp, "wb") as fh:
            wal_crypto.unseal(body, fh, secret, name)
        os.replace(tmp, dest)  # the server never reads half a segment
    except OSError as e:  # the destination's disk (the S3 client's errors are translated above)
        raise disk_error(e, dest) from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def header(repo: S3Repository, name: str) -> wal_crypto.Sealed | None:
    """The encryption header of archived ``name`` (None: a plain one)."""
    where = wal_location(repo)
    with translated(where.url):
        body = repo.client.get_object(Bucket=where.bucket, Key=where.key(name),
                                      Range=f"bytes=0-{wal_crypto.HEADER_SIZE - 1}")["Body"]
        return wal_crypto.parse_header(body.read())


def objects(repo: S3Repository) -> list[tuple[str, int]]:
    """(name, size) of every archived file."""
    where = wal_location(repo)
    start = len(where.prefix) + 1
    return [(key[start:], size) for key, size in list_objects(repo.client, where) if "/" not in key[start:]]


def segments(repo: S3Repository) -> list[str]:
    return sorted(name for name, _size in objects(repo) if wal_archive.SEGMENT.match(name))


def prune_before(repo: S3Repository, first_needed: str) -> int:
    """Delete archived segments older than ``first_needed`` (history files stay); how many."""
    needed = wal_archive.segment_number(first_needed)[1]
    old = [name for name in segments(repo) if wal_archive.segment_number(name)[1] < needed]
    where = wal_location(repo)
    delete_objects(repo.client, where, [where.key(name) for name in old])
    return len(old)


def info(repo: S3Repository) -> dict[str, Any]:
    """What ``wal status`` says about the archive's objects."""
    found = objects(repo)
    return {"dir": wal_location(repo).url, "size": sum(size for _name, size in found),
            "partial": sorted(name for name, _size in found if name.endswith(".partial"))}
