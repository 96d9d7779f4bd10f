"""Secret values of the configuration: 32-byte keys written in base64, and password files."""

from __future__ import annotations

import base64
import binascii
import os
import stat
import sys
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
    """The first line's worth of a password file (surrounding white space dropped).

    A regular file that its group or others may read is used, with a warning on stderr worded as
    libpq's for ``.pgpass`` (docs/configuration.md says why dbcli warns where libpq refuses).
    """
    try:
        with Path(path).expanduser().open(encoding="utf-8") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            text = fh.read()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path}: {e.strerror}") from None
    if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"Warning: {where} {path} has group or world access; permissions should be u=rw (0600) "
              f"or less (chmod 600 {path})", file=sys.stderr, flush=True)
    return text.strip()


def with_password(uri: str, password: str, where: str) -> str:
    """``uri`` (mongodb://user@host...) with ``password`` put in, quoted for a URL."""
    parts = urlsplit(uri)
    if not parts.username:
        raise ConfigError(f"{where} is set but mongo.uri names no user")
    # the hosts as written: a replica set's list (``h1:27017,h2:27017``) is no single host and port
    hosts = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{parts.username}:{quote(password, safe='')}@{hosts}"
    return urlunsplit(parts._replace(netloc=netloc))
