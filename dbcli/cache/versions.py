"""Opening the configured backend, and keeping per-source version bumps that could not reach it.

A bump that fails (Redis down, disk cache unusable) is appended to a local file, one per backend,
and replayed the next time that backend is opened: an outage can delay an invalidation, never
lose it, so stale entries are not resurrected afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from dbcli.cache.backend import Backend, CacheUnavailable
from dbcli.cache.disk import DiskBackend
from dbcli.cache.redis_backend import RedisBackend
from dbcli.config.model import Config
from dbcli.config.paths import cache_home


def open_backend(cfg: Config) -> Backend:
    """The configured backend, with pending version bumps replayed; raises CacheUnavailable."""
    url = cfg.cache.url
    backend: Backend = RedisBackend(url) if url else DiskBackend(cfg.cache.dir)
    try:
        replay_pending(cfg, backend)
    except CacheUnavailable:
        backend.close()
        raise
    return backend


def pending_file(cfg: Config) -> Path:
    """Where bumps wait for this profile's backend."""
    # one file per backend so replaying for Redis A never consumes bumps meant for Redis B
    where = cfg.cache.url or str(cfg.cache.dir)
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return cache_home() / "pending-invalidations" / f"{digest}.txt"


def remember_pending(cfg: Config, names: Sequence[str]) -> None:
    path = pending_file(cfg)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: concurrent writers interleave whole lines, never half ones
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, ("\n".join(names) + "\n").encode())
        finally:
            os.close(fd)


def replay_pending(cfg: Config, backend: Backend) -> None:
    path = pending_file(cfg)
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
        remember_pending(cfg, names)
        raise
    finally:
        claimed.unlink(missing_ok=True)
