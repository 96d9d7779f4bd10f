"""The Redis cache backend, used when ``cache.url`` is set."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dbcli.cache.backend import CacheStats, CacheUnavailable
from dbcli.config.redact import redact_text

PREFIX = "dbcli:"
T = TypeVar("T")


class RedisBackend:
    """Entries as ``dbcli:r:<key>`` strings with an expiry; versions and counters in two hashes."""

    name = "redis"

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        # redis-py costs ~100 ms to import: every write command opens the cache, most use the disk one
        import redis

        self.location = redact_text(url)
        self._errors: type[Exception] = redis.RedisError
        try:
            self._r = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        except ValueError as e:
            raise CacheUnavailable(f"cache.url is not a valid redis URL: {redact_text(str(e))}") from None

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except self._errors as e:
            raise CacheUnavailable(f"redis at {self.location} is unreachable: "
                                   f"{redact_text(str(e)).splitlines()[0] if str(e) else type(e).__name__}") from None

    def versions(self, sources: Sequence[str]) -> dict[str, int]:
        if not sources:
            return {}
        values = self._call(lambda: self._r.hmget(PREFIX + "versions", list(sources)))
        return {s: int(v or 0) for s, v in zip(sources, values, strict=True)}

    def bump(self, sources: Sequence[str]) -> None:
        def run() -> None:
            pipe = self._r.pipeline(transaction=False)
            for s in sources:
                pipe.hincrby(PREFIX + "versions", s, 1)
            pipe.execute()
        self._call(run)

    def get(self, key: str) -> bytes | None:
        def run() -> Any:
            pipe = self._r.pipeline(transaction=False)
            pipe.get(PREFIX + "r:" + key)
            got = pipe.execute()[0]
            self._r.hincrby(PREFIX + "stats", "hits" if got is not None else "misses", 1)
            return got
        got: bytes | None = self._call(run)
        return got

    def put(self, key: str, data: bytes, ttl: int) -> None:
        self._call(lambda: self._r.set(PREFIX + "r:" + key, data, ex=max(1, ttl)))

    def _entry_keys(self) -> list[bytes]:
        return list(self._call(lambda: list(self._r.scan_iter(match=PREFIX + "r:*", count=500))))

    def stats(self) -> CacheStats:
        keys = self._entry_keys()

        def sizes() -> list[int]:
            pipe = self._r.pipeline(transaction=False)
            for k in keys:
                pipe.strlen(k)
            return [int(n) for n in pipe.execute()] if keys else []
        size = sum(self._call(sizes))
        counters = self._call(lambda: self._r.hgetall(PREFIX + "stats"))
        return CacheStats(self.name, self.location, len(keys), size,
                          int(counters.get(b"hits", 0)), int(counters.get(b"misses", 0)))

    def clear(self) -> int:
        keys = self._entry_keys()

        def run() -> None:
            for i in range(0, len(keys), 500):
                self._r.delete(*keys[i:i + 500])
            # versions are kept: resetting them could make an old key valid again
            self._r.delete(PREFIX + "stats")
        self._call(run)
        return len(keys)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._r.close()
