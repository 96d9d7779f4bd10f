"""Secret values of the configuration: 32-byte keys written in base64, and password files."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from dbcli.errors import ConfigError

KEY_HINT = "generate one with: dbcli encryption keygen"


def decode_key(text: str, where: str) -> bytes:
    """A 32-byte key from base64 (standard or URL-safe, padding optional); ConfigError naming ``where``."""
    raw = text.strip()
    if not raw:
        raise ConfigError(f"{where}: must be a base64-encoded 32-byte key")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_" if ("-" in raw or "_" in raw) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: must be a base64-encoded 32-byte key", hint=KEY_HINT) from None
    if len(key) != 32:
        raise ConfigError(f"{where}: must be a base64-encoded 32-byte key (got {len(key)} bytes)", hint=KEY_HINT)
    return key


def read_secret(path: str, where: str) -> str:
    """The first line's worth of a password file (surrounding white space dropped)."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path}: {e.strerror}") from None


def with_password(uri: str, password: str, where: str) -> str:
    """``uri`` (mongodb://user@host...) with ``password`` put in, quoted for a URL."""
    parts = urlsplit(uri)
    if not parts.username:
        raise ConfigError(f"{where} is set but mongo.uri names no user")
    host = parts.hostname or ""
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    if "," in parts.netloc:  # replica-set host lists: keep them as written
        netloc = f"{parts.username}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc))
