"""Streaming AES-256-GCM for backup files: memory stays flat (one chunk) for any file size.

File format (all integers big-endian)::

    header   "DBCLIAE1" (8 bytes) + salt (16 random bytes)
    chunk*   length of the sealed chunk (4 bytes) + AES-GCM(ciphertext || 16-byte tag)

Each file gets its own key, HKDF-SHA256(backup.encryption_key, salt), so nonces never repeat
across files; a chunk's nonce is its index. The associated data of every chunk is the header, the
chunk index and a final-chunk flag: a reordered, dropped, duplicated or truncated chunk, or bytes
after the final chunk, fail authentication instead of decrypting to something plausible.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from typing import IO, Any, Protocol

from dbcli.config.model import Config
from dbcli.errors import ConfigError

MAGIC = b"DBCLIAE1"
SALT_SIZE = 16
HEADER_SIZE = len(MAGIC) + SALT_SIZE
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
ALGORITHM = "AES-256-GCM, HKDF-SHA256 per-file key, 1 MiB chunks"
SUFFIX = ".enc"


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class DecryptError(Exception):
    """The ciphertext is damaged, truncated, reordered, or made with another key."""


def manifest_key(cfg: Config, manifest: dict[str, Any]) -> bytes | None:
    """The key that decrypts the backup ``manifest`` describes (None: not encrypted); ConfigError
    when ``backup.encryption_key`` is not set or is another key."""
    enc = manifest.get("encryption")
    if not enc:
        return None
    key = cfg.backup.encryption_key
    if key is None:
        raise ConfigError(f"backup {manifest['id']} is encrypted but backup.encryption_key is not set")
    if key_id(key) != enc.get("key_id"):
        raise ConfigError(f"backup.encryption_key is not the key backup {manifest['id']} was made with "
                          f"(key id {enc.get('key_id')})")
    return key


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key, stored in the manifest to name the right key."""
    return hashlib.sha256(b"dbcli-backup-key-id\0" + key).hexdigest()[:16]


def _file_cipher(key: bytes, salt: bytes):  # type: ignore[no-untyped-def]
    # cryptography only for encrypted backups: ~13 ms that an unencrypted backup create would pay before pg_dump
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"dbcli backup file v1").derive(key)
    return AESGCM(file_key)


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


class EncryptingWriter(io.RawIOBase):
    """A write-only binary stream that encrypts into ``sink``; ``close()`` seals the final chunk."""

    def __init__(self, sink: IO[bytes], key: bytes, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        self._sink = sink
        self._chunk_size = chunk_size
        self._header = MAGIC + os.urandom(SALT_SIZE)
        self._cipher = _file_cipher(key, self._header[len(MAGIC):])
        self._buffer = bytearray()
        self._index = 0
        sink.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > self._chunk_size:
            # strictly more than a chunk buffered: this one is not the last
            self._seal(bytes(self._buffer[:self._chunk_size]), final=False)
            del self._buffer[:self._chunk_size]
        return len(data)

    def _seal(self, plain: bytes, *, final: bool) -> None:
        sealed = self._cipher.encrypt(_nonce(self._index), plain, _aad(self._header, self._index, final))
        self._sink.write(struct.pack(">I", len(sealed)))
        self._sink.write(sealed)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), final=True)
            self._buffer.clear()
            self._sink.flush()
        super().close()


def decrypt_chunks(source: Readable, key: bytes) -> Iterator[bytes]:
    """The plaintext chunks of an encrypted stream; DecryptError on any damage."""
    from cryptography.exceptions import InvalidTag  # lazily, as in _file_cipher

    header = _read_exact(source, HEADER_SIZE)
    if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
        raise DecryptError("not a dbcli encrypted file (bad header)")
    cipher = _file_cipher(key, header[len(MAGIC):])
    index = 0
    while True:
        size_bytes = _read_exact(source, 4)
        if len(size_bytes) < 4:
            raise DecryptError(f"truncated: ends before the final chunk (after chunk {index})")
        size = struct.unpack(">I", size_bytes)[0]
        if size < TAG_SIZE or size > CHUNK_SIZE * 64 + TAG_SIZE:
            raise DecryptError(f"chunk {index} has an impossible length")
        sealed = _read_exact(source, size)
        if len(sealed) < size:
            raise DecryptError(f"truncated in chunk {index}")
        for final in (False, True):
            try:
                plain = cipher.decrypt(_nonce(index), sealed, _aad(header, index, final))
            except InvalidTag:
                continue
            break
        else:
            raise DecryptError(f"chunk {index} failed authentication (damaged, reordered, or another key)")
        yield plain
        index += 1
        if final:
            if source.read(1):
                raise DecryptError("data after the final chunk")
            return


def read_exact(source: Readable, n: int) -> bytes:
    """``n`` bytes of ``source``; fewer only where it ends."""
    return _read_exact(source, n)


def _read_exact(source: Readable, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        block = source.read(n)
        if not block:
            break
        parts.append(block)
        n -= len(block)
    return b"".join(parts)


class DecryptingReader(io.RawIOBase):
    """A read-only binary stream over the plaintext, for gzip or BSON readers to wrap."""

    def __init__(self, source: IO[bytes], key: bytes) -> None:
        super().__init__()
        self._chunks = decrypt_chunks(source, key)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def open_plain(path: os.PathLike[str] | str, key: bytes | None) -> IO[bytes]:
    """A file's plaintext as a buffered binary stream (decrypting when ``key`` is given)."""
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed with the wrapper
    if key is None:
        return fh
    return io.BufferedReader(_Owning(DecryptingReader(fh, key), fh), buffer_size=CHUNK_SIZE)


class _Owning(io.RawIOBase):
    """Closes the underlying file together with the decrypting reader."""

    def __init__(self, inner: DecryptingReader, fh: IO[bytes]) -> None:
        super().__init__()
        self._inner, self._fh = inner, fh

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._inner.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()
