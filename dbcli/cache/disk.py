"""The on-disk cache backend: one SQLite file, used when ``cache.url`` is not set."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from dbcli.cache.backend import CacheStats, CacheUnavailable

T = TypeVar("T")


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

    def _run(self, fn: Callable[[], T]) -> T:
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
