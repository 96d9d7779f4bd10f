"""Secrets kept out of output: masking in free text (DSNs, URIs) and in the configuration shown."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from dbcli.config.model import Config
from dbcli.config.typed import file_key

SECRET_KEYS = {"password", "encryption_key", "key", "previous_keys", "secret_access_key"}

# Patterns as text: re compiles (and caches) them on first use, so a command that redacts
# nothing does not pay for compiling them at start-up.
_URL_PASSWORD = r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)"
_KV_PASSWORD = r"(?i)(?P<pre>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)"
_QUERY_SECRET = r"(?i)(?P<pre>[?&](?:password|sslpassword|pass|secret|key)=)(?P<pw>[^&\s]+)"


def redact_text(text: str) -> str:
    """Mask passwords in URLs, libpq key=value strings and query parameters."""
    text = re.sub(_URL_PASSWORD, lambda m: f"{m['pre']}***{m['post']}" if m["pw"] else m[0], text)
    text = re.sub(_KV_PASSWORD, lambda m: f"{m['pre']}***", text)
    return re.sub(_QUERY_SECRET, lambda m: f"{m['pre']}***", text)


def redact(value: Any, key: str = "") -> Any:
    """``value`` with every secret (by key name, or inside a URL/DSN) shown as ``***``."""
    if key in SECRET_KEYS and isinstance(value, dict):  # e.g. encryption.previous_keys: {id: key}
        return {k: "***" if v not in (None, "") else v for k, v in value.items()}
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key in SECRET_KEYS and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return redact_text(value)
    return value


def effective(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as a mapping (defaults included, paths as text), secrets masked."""
    out: dict[str, Any] = {
        "profile": cfg.profile,
        "source": str(cfg.source) if cfg.source else None,
        "data_dir": str(cfg.data_dir),
    }
    for spec in dataclasses.fields(cfg):
        section = getattr(cfg, spec.name)
        if dataclasses.is_dataclass(section):
            fields = dataclasses.asdict(section)  # type: ignore[arg-type]
            out[spec.name] = _plain({file_key(k): v for k, v in fields.items()})
    return redact(out)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
