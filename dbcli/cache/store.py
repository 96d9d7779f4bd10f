"""The result cache as dbcli uses it: :func:`note_write` after every write, :class:`ResultCache` for
``report run``, and :func:`stats` / :func:`clear` for the ``cache`` commands.

Entries are keyed by report, typed parameters, profile, target database and the *versions* of
the sources (tables, collections) the report reads. Every dbcli write command calls
:func:`note_write`, which bumps those versions, so a key computed after a write can never match
an entry stored before it: a cached result is never older than dbcli's own last write.

The cache is an optimisation and never a reason to fail: callers get
:class:`~dbcli.cache.backend.CacheUnavailable` and carry on uncached.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dbcli.cache.backend import Backend, CacheStats, CacheUnavailable
from dbcli.cache.codec import decode, encode
from dbcli.cache.keys import entry_key, normalize
from dbcli.cache.versions import open_backend, remember_pending
from dbcli.config.model import Config

DEFAULT_TTL = 300  # seconds, when --cache is given and cache.ttl is not set

_warned = False  # one warning per process about an unreachable cache, however many writes


def note_write(cfg: Config, sources: Iterable[str], *,
               warn: Callable[[str], None] | None = None) -> bool:
    """Record that dbcli wrote to ``sources`` (``"postgres:<table>"``, ``"mongo:<collection>"``).

    Call it after the write committed. It never raises: on an unreachable cache it warns once
    per process on stderr (or through ``warn``), remembers the bump locally and returns False.
    """
    global _warned
    names = sorted({normalize(s) for s in sources if s})
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
        remember_pending(cfg, names)
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
        return entry_key(parts, versions)

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
