"""Result cache for reports: Redis when ``cache.url`` is set, else SQLite on disk.

Entries are keyed by report, typed parameters, profile, target database and the *versions* of
the sources (tables, collections) the report reads. Every dbcli write command calls
:func:`note_write`, which bumps those versions, so a key computed after a write can never match
an entry stored before it: a cached result is never older than dbcli's own last write.

The cache is an optimisation and never a reason to fail: callers get :class:`CacheUnavailable`
and carry on uncached. A version bump that cannot reach the cache is remembered in a local
file and replayed the next time the cache answers, so a Redis outage cannot resurrect stale
entries afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dbcli.config.load import Config, cache_home, redact_text

DEFAULT_TTL = 300  # seconds, when --cache is given and cache.ttl is not set
_PREFIX = "dbcli:"
_COMPRESS_ABOVE = 64 * 1024  # small entries are cheaper to store as they are


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
    name: str
    location: str

    def versions(self, sources: Sequence[str]) -> dict[str, int]: ...
    def bump(self, sources: Sequence[str]) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes, ttl: int) -> None: ...
    def stats(self) -> CacheStats: ...
    def clear(self) -> int: ...
    def close(self) -> None: ...


# ---- backends ----------------------------------------------------------------------------------

class RedisBackend:
    """Entries as ``dbcli:r:<key>`` strings with an expiry; versions and counters in two hashes."""

    name = "redis"

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        import redis

        self.location = redact_text(url)
        try:
            self._r = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        except ValueError as e:
            raise CacheUnavailable(f"cache.url is not a valid redis URL: {redact_text(str(e))}") from None

    def _call(self, fn: Callable[[], Any]) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as e:
            raise CacheUnavailable(f"redis at {self.location} is unreachable: "
                                   f"{redact_text(str(e)).splitlines()[0] if str(e) else type(e).__name__}") from None

    def versions(self, sources: Sequence[str]) -> dict[str, int]:
        if not sources:
            return {}
        values = self._call(lambda: self._r.hmget(_PREFIX + "versions", list(sources)))
        return {s: int(v or 0) for s, v in zip(sources, values, strict=True)}

    def bump(self, sources: Sequence[str]) -> None:
        def run() -> None:
            pipe = self._r.pipeline(transaction=False)
            for s in sources:
                pipe.hincrby(_PREFIX + "versions", s, 1)
            pipe.execute()
        self._call(run)

    def get(self, key: str) -> bytes | None:
        def run() -> Any:
            pipe = self._r.pipeline(transaction=False)
            pipe.get(_PREFIX + "r:" + key)
            got = pipe.execute()[0]
            self._r.hincrby(_PREFIX + "stats", "hits" if got is not None else "misses", 1)
            return got
        return self._call(run)

    def put(self, key: str, data: bytes, ttl: int) -> None:
        self._call(lambda: self._r.set(_PREFIX + "r:" + key, data, ex=max(1, ttl)))

    def _entry_keys(self) -> list[bytes]:
        return list(self._call(lambda: list(self._r.scan_iter(match=_PREFIX + "r:*", count=500))))

    def stats(self) -> CacheStats:
        keys = self._entry_keys()

        def sizes() -> list[int]:
            pipe = self._r.pipeline(transaction=False)
            for k in keys:
                pipe.strlen(k)
            return [int(n) for n in pipe.execute()] if keys else []
        size = sum(self._call(sizes))
        counters = self._call(lambda: self._r.hgetall(_PREFIX + "stats"))
        return CacheStats(self.name, self.location, len(keys), size,
                          int(counters.get(b"hits", 0)), int(counters.get(b"misses", 0)))

    def clear(self) -> int:
        keys = self._entry_keys()

        def run() -> None:
            for i in range(0, len(keys), 500):
                self._r.delete(*keys[i:i + 500])
            # versions are kept: resetting them could make an old key valid again
            self._r.delete(_PREFIX + "stats")
        self._call(run)
        return len(keys)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._r.close()


class DiskBackend:
    """One SQLite file: safe for concurrent cron jobs (WAL + busy timeout), one fsync-light write."""

    name = "disk"

    def __init__(self, directory: Path) -> None:
        self.location = str(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(directory / "cache.sqlite3", timeout=5, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, expires REAL NOT NULL,"
                " data BLOB NOT NULL);"
                "CREATE TABLE IF NOT EXISTS versions (source TEXT PRIMARY KEY, version INTEGER NOT NULL);"
                "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);")
        except (OSError, sqlite3.Error) as e:
            raise CacheUnavailable(f"disk cache at {directory} is unusable: {e}") from None

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sqlite3.Error as e:
            raise CacheUnavailable(f"disk cache at {self.location} is unusable: {e}") from None

    def versions(self, sources: Sequence[str]) -> dict[str, int]:
        if not sources:
            return {}
        marks = ",".join("?" * len(sources))
        rows = self._run(lambda: self._db.execute(
            "SELECT source, version FROM versions WHERE source IN (" + marks + ")", list(sources)).fetchall())
        got = dict(rows)
        return {s: int(got.get(s, 0)) for s in sources}

    def bump(self, sources: Sequence[str]) -> None:
        self._run(lambda: self._db.executemany(
            "INSERT INTO versions (source, version) VALUES (?, 1)"
            " ON CONFLICT (source) DO UPDATE SET version = version + 1", [(s,) for s in sources]))

    def _count(self, name: str) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, 1)"
                         " ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))

    def get(self, key: str) -> bytes | None:
        def run() -> bytes | None:
            row = self._db.execute("SELECT data FROM entries WHERE key = ? AND expires > ?",
                                   (key, time.time())).fetchone()
            self._count("hits" if row else "misses")
            return bytes(row[0]) if row else None
        return self._run(run)

    def put(self, key: str, data: bytes, ttl: int) -> None:
        def run() -> None:
            now = time.time()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # expired rows are swept on write so the file does not grow without bound
                self._db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
                self._db.execute("INSERT OR REPLACE INTO entries (key, expires, data) VALUES (?, ?, ?)",
                                 (key, now + max(1, ttl), data))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._run(run)

    def stats(self) -> CacheStats:
        def run() -> CacheStats:
            n, size = self._db.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM entries"
                                       " WHERE expires > ?", (time.time(),)).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            return CacheStats(self.name, self.location, int(n), int(size),
                              int(counters.get("hits", 0)), int(counters.get("misses", 0)))
        return self._run(run)

    def clear(self) -> int:
        def run() -> int:
            n = self._db.execute("SELECT count(*) FROM entries WHERE expires > ?", (time.time(),)).fetchone()[0]
            self._db.execute("DELETE FROM entries")
            self._db.execute("DELETE FROM counters")
            return int(n)
        return self._run(run)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()


# ---- opening -------------------------------------------------------------------------------------

def disk_dir(cfg: Config) -> Path:
    configured = cfg.get("cache.dir")
    return Path(configured).expanduser() if configured else cache_home() / "results"


def open_backend(cfg: Config) -> Backend:
    """The configured backend, with pending version bumps replayed; raises CacheUnavailable."""
    url = cfg.get("cache.url")
    backend: Backend = RedisBackend(url) if url else DiskBackend(disk_dir(cfg))
    try:
        _replay_pending(cfg, backend)
    except CacheUnavailable:
        backend.close()
        raise
    return backend


def ttl_setting(cfg: Config) -> int:
    """``cache.ttl`` (0 when unset): a positive value turns the cache on for ``report run``."""
    value = cfg.get("cache.ttl")
    return int(value) if value else 0


# ---- version bumps from write commands ---------------------------------------------------------------

def source_names(target: str, names: Iterable[str]) -> list[str]:
    """``("postgres", ["orders"])`` -> ``["postgres:orders"]``: the names :func:`note_write` takes."""
    out = []
    for name in names:
        bare = name.split(":", 1)[1] if name.startswith(f"{target}:") else name
        if target == "postgres" and bare.startswith("public."):
            bare = bare[len("public."):]
        out.append(f"{target}:{bare}")
    return out


def _normalize(source: str) -> str:
    # "postgres:public.orders" and "postgres:orders" are the same table to a report
    target, sep, name = source.partition(":")
    return source_names(target, [name])[0] if sep and target == "postgres" else source


_warned = False


def note_write(cfg: Config, sources: Iterable[str], *,
               warn: Callable[[str], None] | None = None) -> bool:
    """Record that dbcli wrote to ``sources`` (``"postgres:<table>"``, ``"mongo:<collection>"``).

    Call it after the write committed. It never raises: on an unreachable cache it warns once
    per process on stderr (or through ``warn``), remembers the bump locally and returns False.
    """
    global _warned
    names = sorted({_normalize(s) for s in sources if s})
    if not names:
        return True
    try:
        backend = open_backend(cfg)
        try:
            backend.bump(names)
        finally:
            backend.close()
        return True
    except CacheUnavailable as e:
        _remember_pending(cfg, names)
        if not _warned:
            _warned = True
            message = f"{e}: cached reports on these sources will be refreshed when it is back"
            if warn is not None:
                warn(message)
            else:
                print(f"Warning: {message}", file=sys.stderr, flush=True)
        return False
    except Exception as e:  # the cache must never fail the caller's write
        message = f"cache version bump failed: {type(e).__name__}"
        if warn is not None:
            warn(message)
        else:
            print(f"Warning: {message}", file=sys.stderr, flush=True)
        return False


def _pending_file(cfg: Config) -> Path:
    # one file per backend so replaying for Redis A never consumes bumps meant for Redis B
    where = cfg.get("cache.url") or str(disk_dir(cfg))
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return cache_home() / "pending-invalidations" / f"{digest}.txt"


def _remember_pending(cfg: Config, names: Sequence[str]) -> None:
    path = _pending_file(cfg)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: concurrent writers interleave whole lines, never half ones
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, ("\n".join(names) + "\n").encode())
        finally:
            os.close(fd)


def _replay_pending(cfg: Config, backend: Backend) -> None:
    path = _pending_file(cfg)
    if not path.exists():  # the common case costs one stat()
        return
    claimed = path.with_suffix(f".{os.getpid()}.claimed")
    try:
        os.replace(path, claimed)  # atomically take ownership, so each bump is replayed once
    except OSError:
        return
    names = sorted({line.strip() for line in claimed.read_text().splitlines() if line.strip()})
    try:
        backend.bump(names)
    except CacheUnavailable:
        _remember_pending(cfg, names)
        raise
    finally:
        claimed.unlink(missing_ok=True)


# ---- the cache as reports use it -----------------------------------------------------------------------

class ResultCache:
    """Lookup and store for one command run; after the first failure it turns itself off."""

    def __init__(self, cfg: Config, *, ttl: int, on_warning: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.ttl = ttl
        self._warn = on_warning
        self._backend: Backend | None = None
        self.disabled = False

    def _open(self) -> Backend | None:
        if self.disabled:
            return None
        if self._backend is None:
            try:
                self._backend = open_backend(self.cfg)
            except CacheUnavailable as e:
                self._fail(e)
        return self._backend

    def _fail(self, e: CacheUnavailable) -> None:
        self.disabled = True
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        self._warn(f"{e}: running the report uncached")

    def key(self, parts: dict[str, Any], sources: Sequence[str]) -> str | None:
        """The entry key for ``parts`` at the sources' current versions (None when disabled)."""
        backend = self._open()
        if backend is None:
            return None
        try:
            versions = backend.versions(list(sources))
        except CacheUnavailable as e:
            self._fail(e)
            return None
        blob = json.dumps({**parts, "versions": versions}, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        backend = self._open()
        if backend is None:
            return None
        try:
            data = backend.get(key)
        except CacheUnavailable as e:
            self._fail(e)
            return None
        return decode(data) if data is not None else None

    def put(self, key: str, value: Any) -> None:
        backend = self._open()
        if backend is None:
            return
        try:
            backend.put(key, encode(value), self.ttl)
        except CacheUnavailable as e:
            self._fail(e)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def stats(cfg: Config) -> CacheStats:
    """Raises CacheUnavailable (the cache commands turn it into exit 4)."""
    backend = open_backend(cfg)
    try:
        return backend.stats()
    finally:
        backend.close()


def clear(cfg: Config) -> int:
    backend = open_backend(cfg)
    try:
        return backend.clear()
    finally:
        backend.close()


# ---- value encoding: tagged JSON keeps Decimal, dates, bytes... exact (no pickle from a shared Redis) ---

def encode(value: Any) -> bytes:
    raw = json.dumps(_tag(value), separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > _COMPRESS_ABOVE:
        return b"z" + zlib.compress(raw, 1)
    return b"j" + raw


def decode(data: bytes) -> Any:
    kind, body = data[:1], data[1:]
    raw = zlib.decompress(body) if kind == b"z" else body
    return _untag(json.loads(raw))


def _tag(v: Any) -> Any:
    import datetime as dt
    import uuid
    from decimal import Decimal

    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**53 else {"$t": "int", "v": str(v)}
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else {"$t": "float", "v": repr(v)}
    if isinstance(v, dict):
        if "$t" in v:
            return {"$t": "dict", "v": [[k, _tag(x)] for k, x in v.items()]}
        return {str(k): _tag(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_tag(x) for x in v]
    if isinstance(v, Decimal):
        return {"$t": "dec", "v": str(v)}
    if isinstance(v, dt.datetime):
        return {"$t": "dt", "v": v.isoformat()}
    if isinstance(v, dt.date):
        return {"$t": "date", "v": v.isoformat()}
    if isinstance(v, dt.time):
        return {"$t": "time", "v": v.isoformat()}
    if isinstance(v, dt.timedelta):
        return {"$t": "td", "v": [v.days, v.seconds, v.microseconds]}
    if isinstance(v, uuid.UUID):
        return {"$t": "uuid", "v": str(v)}
    if isinstance(v, bytes | bytearray | memoryview):
        import base64

        return {"$t": "bytes", "v": base64.b64encode(bytes(v)).decode()}
    if type(v).__module__.startswith("bson"):
        from bson import json_util

        return {"$t": "bson", "v": json_util.dumps(v, json_options=json_util.CANONICAL_JSON_OPTIONS)}
    return {"$t": "str", "v": str(v)}


def _untag(v: Any) -> Any:
    if isinstance(v, list):
        return [_untag(x) for x in v]
    if not isinstance(v, dict):
        return v
    tag = v.get("$t")
    if tag is None:
        return {k: _untag(x) for k, x in v.items()}
    import datetime as dt
    import uuid
    from decimal import Decimal

    raw = v["v"]
    if tag == "dec":
        return Decimal(raw)
    if tag == "dt":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "time":
        return dt.time.fromisoformat(raw)
    if tag == "td":
        return dt.timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2])
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "bytes":
        import base64

        return base64.b64decode(raw)
    if tag == "int":
        return int(raw)
    if tag == "float":
        return float(raw)
    if tag == "dict":
        return {k: _untag(x) for k, x in raw}
    if tag == "bson":
        from bson import json_util

        return json_util.loads(raw, json_options=json_util.CANONICAL_JSON_OPTIONS)
    return raw
