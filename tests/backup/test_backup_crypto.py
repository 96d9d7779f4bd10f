"""Streaming AES-GCM: round trips, and every kind of damage is detected."""

from __future__ import annotations

import io
import os
import struct

import pytest

from dbcli.backup import crypto as backup_crypto
from dbcli.backup.crypto import DecryptError, EncryptingWriter, decrypt_chunks

KEY = bytes(range(32))
SMALL = 64  # chunk size for the tests: many chunks from little data


def _encrypt(data: bytes, key: bytes = KEY, chunk: int = SMALL, pieces: int = 7) -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, key, chunk_size=chunk)
    for i in range(0, len(data), pieces):
        writer.write(data[i:i + pieces])
    writer.close()
    return sink.getvalue()


def _decrypt(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(blob), key))


def _records(blob: bytes) -> tuple[bytes, list[bytes]]:
    header, pos, records = blob[:backup_crypto.HEADER_SIZE], backup_crypto.HEADER_SIZE, []
    while pos < len(blob):
        size = struct.unpack(">I", blob[pos:pos + 4])[0]
        records.append(blob[pos:pos + 4 + size])
        pos += 4 + size
    return header, records


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 5])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = _encrypt(data)
    assert _decrypt(blob) == data
    assert len(data) < 16 or data not in blob  # (a byte or two may occur in any ciphertext by chance)
    reader = backup_crypto.DecryptingReader(io.BytesIO(blob), KEY)
    assert reader.read() == data


def test_same_plaintext_encrypts_differently() -> None:
    assert _encrypt(b"x" * 100) != _encrypt(b"x" * 100)  # a fresh salt, so a fresh file key, per file


def test_truncation_at_a_chunk_boundary_is_detected() -> None:
    header, records = _records(_encrypt(os.urandom(3 * SMALL + 5)))
    with pytest.raises(DecryptError, match="truncated: ends before the final chunk"):
        _decrypt(header + b"".join(records[:-1]))


def test_truncation_inside_a_chunk_is_detected() -> None:
    blob = _encrypt(os.urandom(3 * SMALL))
    with pytest.raises(DecryptError, match="truncated in chunk"):
        _decrypt(blob[:-3])


def test_reordered_chunks_are_detected() -> None:
    header, records = _records(_encrypt(os.urandom(3 * SMALL + 5)))
    records[0], records[1] = records[1], records[0]
    with pytest.raises(DecryptError, match="chunk 0 failed authentication"):
        _decrypt(header + b"".join(records))


def test_dropping_the_final_flag_is_detected() -> None:
    # a file cut after a full non-final chunk, then given a copy of that chunk as its "end"
    header, records = _records(_encrypt(os.urandom(2 * SMALL + 1)))
    with pytest.raises(DecryptError):
        _decrypt(header + records[0] + records[0])


def test_trailing_data_is_detected() -> None:
    with pytest.raises(DecryptError, match="data after the final chunk"):
        _decrypt(_encrypt(b"hello") + b"\0")


@pytest.mark.parametrize("where", [0, 10, 30, -1])
def test_flipped_byte_is_detected(where: int) -> None:
    blob = bytearray(_encrypt(os.urandom(2 * SMALL)))
    blob[where] ^= 0x01
    with pytest.raises(DecryptError):
        _decrypt(bytes(blob))


def test_wrong_key_is_detected() -> None:
    with pytest.raises(DecryptError, match="failed authentication"):
        _decrypt(_encrypt(b"secret data"), key=bytes(32))


def test_memory_stays_flat_while_streaming() -> None:
    import tracemalloc

    block = os.urandom(256 * 1024)
    tracemalloc.start()
    with open(os.devnull, "wb") as sink:
        writer = EncryptingWriter(sink, KEY)
        for _ in range(64):  # 16 MiB through 1 MiB chunks
            writer.write(block)
        writer.close()
    _size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 6 * backup_crypto.CHUNK_SIZE


def test_key_id_is_stable_and_not_the_key() -> None:
    assert backup_crypto.key_id(KEY) == backup_crypto.key_id(bytes(range(32)))
    assert backup_crypto.key_id(KEY) != backup_crypto.key_id(bytes(32))
    assert KEY.hex()[:16] != backup_crypto.key_id(KEY)
