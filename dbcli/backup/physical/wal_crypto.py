"""Encrypted WAL files in the archive (``backup.encryption_key`` set), local or on S3.

An encrypted WAL file keeps its name (listing, gaps and pruning read names only) and holds::

    "DBCLIWE1" (8 bytes) + key id (16 ASCII hex) + SHA-256 of the plain content (32 bytes)
    + the plain content as a dbcli encrypted stream (see dbcli.backup.crypto)

The plain SHA-256 is what ``wal archive`` compares when a name is archived again: the ciphertext
differs on every run (a random salt), the content it holds does not. The key id names the key a
``wal fetch`` needs, so a wrong or missing key is one line (exit 3), not a failed decryption. A
file without the marker is a plain one (archived before encryption was turned on) and reads as is.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dbcli.backup import crypto as backup_crypto
from dbcli.errors import CheckFailedError, ConfigError

MAGIC = b"DBCLIWE1"
KEY_ID_SIZE = 16
DIGEST_SIZE = 32
HEADER_SIZE = len(MAGIC) + KEY_ID_SIZE + DIGEST_SIZE
CHUNK = 1 << 20


@dataclass(frozen=True)
class Sealed:
    """What the header of an encrypted WAL file says."""

    key_id: str
    sha256: str  # of the plain content


def parse_header(head: bytes) -> Sealed | None:
    """The header of an encrypted WAL file (its first HEADER_SIZE bytes); None for a plain file."""
    if len(head) < HEADER_SIZE or not head.startswith(MAGIC):
        return None
    key_id = head[len(MAGIC):len(MAGIC) + KEY_ID_SIZE].decode("ascii", errors="replace")
    return Sealed(key_id, head[len(MAGIC) + KEY_ID_SIZE:HEADER_SIZE].hex())


def read_header(path: Path) -> Sealed | None:
    with open(path, "rb") as fh:
        return parse_header(fh.read(HEADER_SIZE))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def seal(source: IO[bytes], sink: IO[bytes], key: bytes, digest: str) -> None:
    """Write ``source`` (whose plain SHA-256 is ``digest``) encrypted into ``sink``, header first."""
    sink.write(MAGIC + backup_crypto.key_id(key).encode("ascii") + bytes.fromhex(digest))
    writer = backup_crypto.EncryptingWriter(sink, key)
    while chunk := source.read(CHUNK):
        writer.write(chunk)
    writer.close()  # seals the final chunk; the sink stays open


def key_for(sealed: Sealed, key: bytes | None, name: str) -> bytes:
    """The configured key when it is the one ``name`` was archived with; ConfigError (exit 3) if not."""
    if key is None:
        raise ConfigError(f"WAL file {name} is encrypted but backup.encryption_key is not set",
                          hint="give wal fetch the config file that holds the key (--config)")
    if backup_crypto.key_id(key) != sealed.key_id:
        raise ConfigError(f"backup.encryption_key is not the key WAL file {name} was archived with "
                          f"(key id {sealed.key_id})")
    return key


def unseal(source: IO[bytes], sink: IO[bytes], key: bytes | None, name: str) -> None:
    """Copy the plain content of an archived WAL file (encrypted or plain) from ``source`` to ``sink``."""
    head = backup_crypto.read_exact(source, HEADER_SIZE)
    sealed = parse_header(head)
    if sealed is None:
        sink.write(head)
        shutil.copyfileobj(source, sink, CHUNK)
        return
    plain_key = key_for(sealed, key, name)
    digest = hashlib.sha256()
    try:
        for chunk in backup_crypto.decrypt_chunks(source, plain_key):
            digest.update(chunk)
            sink.write(chunk)
    except backup_crypto.DecryptError as e:
        raise CheckFailedError(f"WAL file {name} is damaged: {e}") from None
    if digest.hexdigest() != sealed.sha256:
        raise CheckFailedError(f"WAL file {name} is damaged: its content does not match its checksum")

