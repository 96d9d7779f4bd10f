"""``schema new``: the next numbered migration file, written into the configured schema directory.

The file appears whole or not at all, and never replaces one: it is written under a temporary name
and linked to its final name, which fails if that name exists. Two ``schema new`` at once take
turns (a lock on the directory), so they cannot pick the same number.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dbcli.config.model import Config
from dbcli.errors import ConfigError, ConflictError, UsageError
from dbcli.fsutil import fsync_path, write_errors_mapped
from dbcli.schema.files import MIGRATION_NAME, check_layout, read_migration

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
NAME_HINT = "letters, digits, _ . and -, e.g. add_user_nickname"


@dataclass(frozen=True)
class NewMigration:
    version: str
    name: str
    path: Path


def new_migration(cfg: Config, name: str) -> NewMigration:
    """Write ``postgres/<next version>_<name>.sql`` (a header comment only) and return it."""
    check_name(name)
    pg_dir = _postgres_dir(cfg)
    with write_errors_mapped(pg_dir):
        pg_dir.mkdir(exist_ok=True)
        lock = os.open(pg_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = next_version(pg_dir)
            path = pg_dir / f"{version}_{name}.sql"
            write_new(path, f"-- {version}_{name}: describe the change here.\n\n")
        finally:
            os.close(lock)
    return NewMigration(version=version, name=name, path=path)


def check_name(name: str) -> None:
    if name.lower().endswith(".sql"):
        raise UsageError(f"migration name {name!r}: give it without .sql", hint=NAME_HINT)
    if not NAME.match(name) or not MIGRATION_NAME.match(f"0001_{name}.sql"):
        raise UsageError(f"migration name {name!r} is not a file name dbcli reads as a migration", hint=NAME_HINT)


def next_version(pg_dir: Path) -> str:
    """One more than the highest version, as wide as the widest so far (four digits at least)."""
    versions = [read_migration(p).version for p in pg_dir.glob("*.sql")]
    if not versions:
        return "0001"
    width = max(4, *(len(v) for v in versions))
    return str(max(int(v) for v in versions) + 1).zfill(width)


def _postgres_dir(cfg: Config) -> Path:
    if cfg.schema.dir is None:
        raise ConfigError("schema new writes into schema.dir, and none is set (the built-in schema is the "
                          "sample shop's)", hint="set schema.dir in the config to your schema directory")
    root = cfg.schema.dir.expanduser()
    if not root.is_dir():
        raise ConfigError(f"schema directory not found: {root}", hint="create it, or fix schema.dir in the config")
    if any(root.glob("*.sql")) or (root / "postgres").is_dir() or (root / "mongo").is_dir():
        check_layout(root)  # an empty directory is a schema directory that has no migration yet
    return root / "postgres"


def write_new(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, fails when the name is taken
        except FileExistsError:
            raise ConflictError(f"{path} exists already; nothing was written") from None
        fsync_path(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)
