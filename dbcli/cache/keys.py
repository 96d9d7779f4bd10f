"""Entry keys and source names: a key covers what a result depends on plus the current version of
every source (table, collection) it reads, so a version bump makes every older key unreachable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any


def source_names(target: str, names: Iterable[str]) -> list[str]:
    """``("postgres", ["orders"])`` -> ``["postgres:orders"]``: the names ``note_write`` takes."""
    out = []
    for name in names:
        bare = name.split(":", 1)[1] if name.startswith(f"{target}:") else name
        if target == "postgres" and bare.startswith("public."):
            bare = bare[len("public."):]
        out.append(f"{target}:{bare}")
    return out


def normalize(source: str) -> str:
    """``postgres:public.orders`` and ``postgres:orders`` are the same table to a report."""
    target, sep, name = source.partition(":")
    return source_names(target, [name])[0] if sep and target == "postgres" else source


def entry_key(parts: Mapping[str, Any], versions: Mapping[str, int]) -> str:
    """The key of the entry for ``parts`` (report, parameters, database...) at these source versions."""
    blob = json.dumps({**parts, "versions": versions}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
