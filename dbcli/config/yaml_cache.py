"""A parse cache for the YAML files most commands read: the config and report definitions.

Importing PyYAML costs ~10 ms, a sixth of a short command's run. The parsed data of each file is
kept (marshal) under ``$XDG_CACHE_HOME/dbcli/yaml/`` with the length and the 64-bit hash of the
text it came from (``importlib.util.source_hash``, what Python checks hash-based .pyc files with):
an edited file is never served stale, whatever its time stamps say. The text itself is not kept
(a comment may hold anything). Anything that goes wrong with the cache means parsing as usual.

Callers decide what may be kept: the config loader refuses to cache a file holding a secret, so
no password is ever copied out of the config file.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbcli.config.paths import cache_home

# Bump when a parser's output changes shape; marshal's format differs between Python versions.
_FORMAT = f"dbcli-yaml-2/py{sys.version_info[0]}.{sys.version_info[1]}/m{marshal.version}"


def load(path: Path, text: str, kind: str, parse: Callable[[str], Any],
         keep: Callable[[Any], bool] = lambda data: True) -> Any:
    """``parse(text)``, or the data it gave last time for this very text of ``path``."""
    where = os.path.abspath(path)
    entry = _entry(where, kind)
    if entry is None:
        return parse(text)
    from importlib.util import source_hash

    raw = text.encode("utf-8", "surrogatepass")
    fingerprint = (len(raw), source_hash(raw))
    try:
        stored = marshal.loads(entry.read_bytes())
        if stored[0] == _FORMAT and stored[1] == kind and stored[2] == where and stored[3] == fingerprint:
            return stored[4]
    except Exception:  # missing, unreadable or damaged (marshal raises several types): parse
        pass
    data = parse(text)
    if keep(data):
        _store(entry, (_FORMAT, kind, where, fingerprint, data))
    return data


def _entry(where: str, kind: str) -> Path | None:
    if os.environ.get("DBCLI_NO_YAML_CACHE", "") not in ("", "0"):
        return None
    # one entry per file and kind, overwritten when the text changes; a clash of two paths on
    # the checksum only costs a parse, as the stored path must match too
    return cache_home() / "yaml" / f"{kind}-{zlib.crc32(where.encode()):08x}.marshal"


def _store(entry: Path, record: tuple[Any, ...]) -> None:
    try:
        blob = marshal.dumps(record)
    except ValueError:  # dates and other types marshal cannot hold: not worth caching
        return
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, entry)  # readers see the old entry or the new one, never half of one
    except OSError:
        tmp.unlink(missing_ok=True)
