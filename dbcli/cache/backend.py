"""The one small interface every cache backend meets (disk, Redis), its error and its statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class CacheUnavailable(Exception):  # not a DbcliError: callers fall back to no cache
    """The cache backend cannot be reached or used; the message is safe to show."""


@dataclass
class CacheStats:
    backend: str
    location: str
    entries: int
    size_bytes: int
    hits: int
    misses: int

    def as_record(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"backend": self.backend, "location": self.location, "entries": self.entries,
                "size_bytes": self.size_bytes, "hits": self.hits, "misses": self.misses,
                "hit_ratio": round(self.hits / total, 4) if total else None}


class Backend(Protocol):
    """Entries (bytes under a key, with a time to live) and a version counter per source.

    Every method raises :class:`CacheUnavailable` when the store cannot be reached or used.
    """

    name: str
    location: str

    def versions(self, sources: Sequence[str]) -> dict[str, int]: ...
    def bump(self, sources: Sequence[str]) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes, ttl: int) -> None: ...
    def stats(self) -> CacheStats: ...
    def clear(self) -> int: ...
    def close(self) -> None: ...
