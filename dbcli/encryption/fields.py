"""Application-level encryption of configured columns (PostgreSQL) and fields (MongoDB).

Each value is encrypted with AES-256-GCM under a random 96-bit nonce and stored as the text token
``enc:v1:<key_id>:<base64url(nonce + ciphertext + tag)>``. The associated data binds a token to its
table/collection and column/field, so a ciphertext copied into another column does not decrypt.
The key id travels with every token, so rotation can tell old tokens from new ones and a reader
can pick the right key among ``encryption.previous_keys``.

Reading: a token decrypts to text; a value that is not a token (written before encryption was
turned on) reads as it is; without the key, tokens read as ``***encrypted***``. A token whose key
id is unknown also reads masked (and is noted, so the CLI can warn). A token that fails
authentication under a known key (tampered, or a different key under the same id) raises
``CheckFailedError`` (exit 8): silently masking it would hide tampering.

Writing to a configured column/field without the key raises ``ConfigError`` (exit 3).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dbcli.config.model import Config
from dbcli.config.secrets import decode_key
from dbcli.errors import CheckFailedError, ConfigError
from dbcli.output import to_json

PREFIX = "enc:v1:"
MASK = "***encrypted***"
NONCE_BYTES = 12


def generate_key() -> str:
    """A fresh random 256-bit key, base64 encoded (what ``encryption.key`` expects)."""
    return base64.b64encode(os.urandom(32)).decode()


def key_id_for(key: bytes) -> str:
    """Default key id: a short fingerprint of the key (not secret: SHA-256 is one-way)."""
    return "k" + hashlib.sha256(b"dbcli-key-id:" + key).hexdigest()[:10]


def is_token(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def token_key_id(value: str) -> str | None:
    """The key id of a token, or None if ``value`` is not a well-formed token."""
    if not is_token(value):
        return None
    parts = value.split(":", 3)
    return parts[2] if len(parts) == 4 and parts[2] else None


def to_text(value: Any) -> str:
    """The text form a value is encrypted in (dates as ISO-8601, numbers exact)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping | list | tuple):
        return to_json(value, extended=True)
    return str(value)


def _aad(kind: str, container: str, name: str) -> bytes:
    # kind keeps a table and a collection of the same name apart
    return json.dumps(["dbcli", "v1", kind, container, name]).encode()


@dataclass
class Encryptor:
    """Encrypts and decrypts the configured columns and fields. Build it with ``from_config``."""

    columns: dict[str, frozenset[str]]
    fields: dict[str, frozenset[str]]
    key_id: str | None = None
    _keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    # key ids met while reading that no configured key matches (the CLI warns once about them)
    unknown_key_ids: set[str] = field(default_factory=set)
    masked: int = 0

    @classmethod
    def from_config(cls, cfg: Config) -> Encryptor | None:
        """None when no column or field is configured for encryption (the keys were checked at load)."""
        settings = cfg.encryption
        if not settings.columns and not settings.fields:
            return None
        keys = dict(settings.previous_keys)
        key_id: str | None = None
        if settings.key is not None:
            key_id = settings.key_id or key_id_for(settings.key)
            keys[key_id] = settings.key
        return cls(columns=_frozen(settings.columns), fields=_frozen(settings.fields), key_id=key_id, _keys=keys)

    @classmethod
    def with_key(cls, key: str, *, key_id: str | None = None, columns: Mapping[str, list[str]] | None = None,
                 fields: Mapping[str, list[str]] | None = None,
                 previous_keys: Mapping[str, str] | None = None) -> Encryptor:
        """Build one without a Config (library use, tests)."""
        raw = decode_key(key, "key")
        kid = key_id or key_id_for(raw)
        keys = {k: decode_key(v, f"previous_keys.{k}") for k, v in (previous_keys or {}).items()}
        keys[kid] = raw
        return cls(columns=_frozen(columns or {}), fields=_frozen(fields or {}), key_id=kid, _keys=keys)

    # ---- what is configured
    @property
    def has_key(self) -> bool:
        return self.key_id is not None

    def columns_for(self, table: str) -> set[str]:
        return set(self.columns.get(table, ()))

    def fields_for(self, collection: str) -> set[str]:
        return set(self.fields.get(collection, ()))

    # ---- single values
    def encrypt_value(self, kind: str, container: str, name: str, value: Any) -> Any:
        """The token for ``value`` (None stays None). ``kind`` is ``table`` or ``collection``."""
        if value is None:
            return None
        if self.key_id is None:
            what = "column" if kind == "table" else "field"
            raise ConfigError(f"{what} {container}.{name} is encrypted but encryption.key is not set",
                              hint="set encryption.key (for example key: ${DBCLI_DATA_KEY})")
        if is_token(value) and self._verifies(kind, container, name, value):
            return value  # already a valid token for this very column (a raw copy being re-stored)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # ~10 ms: only when a value is written

        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[self.key_id]).encrypt(nonce, to_text(value).encode("utf-8"),
                                                         _aad(kind, container, name))
        return f"{PREFIX}{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def decrypt_value(self, kind: str, container: str, name: str, value: Any) -> Any:
        """Plain text for a token; non-tokens as they are; the mask when the key is missing."""
        if not is_token(value):
            return value
        kid = token_key_id(value)
        key = self._keys.get(kid or "")
        if key is None:
            if self._keys and kid:
                self.unknown_key_ids.add(kid)
            self.masked += 1
            return MASK
        plain = self._open(key, kind, container, name, value)
        if plain is None:
            what = "column" if kind == "table" else "field"
            raise CheckFailedError(f"cannot decrypt {what} {container}.{name}: authentication failed "
                                   f"(wrong key for key id {kid!r}, or tampered ciphertext)")
        return plain

    def _open(self, key: bytes, kind: str, container: str, name: str, token: str) -> str | None:
        # ~10 ms of import: a command on tables without encrypted values never pays it
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        body = token.split(":", 3)[3]
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(blob) < NONCE_BYTES + 16:
            return None
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(kind, container, name)).decode()
        except (InvalidTag, UnicodeDecodeError):
            return None

    def _verifies(self, kind: str, container: str, name: str, token: str) -> bool:
        key = self._keys.get(token_key_id(token) or "")
        return key is not None and self._open(key, kind, container, name, token) is not None

    def needs_rotation(self, value: Any) -> bool:
        """True for a plain value or a token under another key than the current one."""
        if value is None:
            return False
        return token_key_id(value) != self.key_id if is_token(value) else True

    def rotate_value(self, kind: str, container: str, name: str, value: Any) -> Any:
        """``value`` re-encrypted under the current key (plain values get encrypted)."""
        plain = self.decrypt_value(kind, container, name, value)
        if plain == MASK and is_token(value):
            raise ConfigError(f"no key for key id {token_key_id(value)!r} found in {container}.{name}",
                              hint="add it to encryption.previous_keys")
        return self.encrypt_value(kind, container, name, plain)

    # ---- rows (PostgreSQL)
    def encrypt_row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        cols = self.columns.get(table)
        if not cols:
            return row
        return {k: self.encrypt_value("table", table, k, v) if k in cols else v for k, v in row.items()}

    def decrypt_row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        cols = self.columns.get(table)
        if not cols:
            return row
        return {k: self.decrypt_value("table", table, k, v) if k in cols else v for k, v in row.items()}

    # ---- documents (MongoDB); dotted paths walk nested documents and arrays of documents
    def encrypt_doc(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        paths = self.fields.get(collection)
        if not paths:
            return doc
        return map_paths(doc, {p: p for p in paths}, lambda p, v: self.encrypt_value("collection", collection, p, v))

    def decrypt_doc(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        paths = self.fields.get(collection)
        if not paths:
            return doc
        return map_paths(doc, {p: p for p in paths}, lambda p, v: self.decrypt_value("collection", collection, p, v))

    def encrypt_path_value(self, collection: str, path: str, value: Any) -> Any:
        """Encrypt what an update writes at ``path`` (``$set``): the field itself, or a parent of it."""
        paths = self.fields.get(collection) or frozenset()
        if path in paths:
            enc = self.encrypt_value
            if isinstance(value, list):  # like encrypt_doc: an array field is encrypted element by element
                return [enc("collection", collection, path, v) for v in value]
            return enc("collection", collection, path, value)
        below = {p[len(path) + 1:]: p for p in paths if p.startswith(path + ".")}
        if not below or not isinstance(value, dict | list):
            return value
        return map_paths(value, below, lambda p, v: self.encrypt_value("collection", collection, p, v))

    def notices(self) -> list[str]:
        """Warnings worth showing once after a read (unknown key ids, masked values)."""
        out = []
        if self.unknown_key_ids:
            ids = ", ".join(sorted(self.unknown_key_ids))
            out.append(f"no key configured for key id {ids}: values shown as {MASK}")
        elif self.masked and not self.has_key:
            out.append(f"encryption.key is not set: {self.masked} encrypted value(s) shown as {MASK}")
        return out


def map_paths(value: Any, paths: Mapping[str, str], fn: Callable[[str, Any], Any]) -> Any:
    """Copy of ``value`` with ``fn(full_path, leaf)`` applied at each relative path of ``paths``
    (``{relative dotted path: full path}``); arrays of documents are walked, the input is not changed."""
    if isinstance(value, list):
        return [map_paths(v, paths, fn) if isinstance(v, dict | list) else v for v in value]
    if not isinstance(value, dict):
        return value
    here = {rel.split(".", 1)[0] for rel in paths}
    if not here & value.keys():
        return value
    out = dict(value)
    for head in here & value.keys():
        if head in paths:
            item = out[head]
            out[head] = [fn(paths[head], v) for v in item] if isinstance(item, list) else fn(paths[head], item)
        sub = {rel.split(".", 1)[1]: full for rel, full in paths.items() if rel.startswith(head + ".")}
        if sub and isinstance(out[head], dict | list):
            out[head] = map_paths(out[head], sub, fn)
    return out


def _frozen(names: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    return {str(t): frozenset(c) for t, c in names.items() if c}
