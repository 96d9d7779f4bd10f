"""A scratch database on the profile's PostgreSQL server, dropped whatever happens.

``schema diff`` builds what the migrations define in one: ``CREATE DATABASE`` on the target server,
so the comparison runs on the same version, extensions and settings as the live database.

Ctrl-C and SIGTERM (a CI job's timeout, ``docker stop``) drop it on the way out. Only a process
killed outright (``kill -9``, an OOM kill, a lost machine) leaves one behind: its name carries the
server's clock at creation, and the next run drops those older than :data:`STALE_AFTER` that no
session uses, and names the ones it could not drop.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError
from dbcli.postgres import connection as postgres

PREFIX = "dbcli_diff_"
# a run connects to its scratch database right after creating it: an older one no session uses is
# a dead run's (the age is read on the server's clock, so clients' clocks do not matter)
STALE_AFTER = 60
_NAME = re.compile(rf"^{PREFIX}(\d+)_[0-9a-f]+$")


@dataclass
class Scratch:
    name: str
    dropped: list[str] = field(default_factory=list)  # left by killed runs, dropped now
    left: list[str] = field(default_factory=list)  # left by killed runs, in use or not ours to drop


@contextlib.contextmanager
def scratch_database(cfg: Config) -> Iterator[Scratch]:
    """A new, empty database (from template0), dropped when the block ends: on success, on an error,
    on Ctrl-C and on SIGTERM. A role that may not create databases is a config error (exit 3)."""
    with _terminate_interrupts():
        scratch = _create(cfg)
        try:
            yield scratch
        except BaseException:
            with contextlib.suppress(Exception):  # the error that ended the block is the one to report
                drop(cfg, scratch.name)
            raise
        drop(cfg, scratch.name)


@contextlib.contextmanager
def _terminate_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs: the scratch database is dropped and the
    run ends as an interrupted one (exit 130), where Python's default would end it on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _create(cfg: Config) -> Scratch:
    with postgres.connect(cfg, autocommit=True) as conn:
        try:
            now = _epoch(conn)
            dropped, left = _sweep(conn, now)
            scratch = Scratch(f"{PREFIX}{now}_{secrets.token_hex(3)}", dropped, left)
            # template0: whatever a site added to template1 is not what the migrations define
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch.name)))
        except psycopg.errors.InsufficientPrivilege:
            raise ConfigError(
                "schema diff needs a scratch database and the profile's role may not create one",
                hint="grant it CREATEDB (ALTER ROLE ... CREATEDB), or run schema diff under a profile whose "
                     "role may create databases") from None
        except psycopg.Error as e:
            raise postgres.translate(e, cfg) from None
    return scratch


def _epoch(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT extract(epoch FROM now())::bigint").fetchone()
    assert row is not None
    return int(row[0])


def _sweep(conn: psycopg.Connection[Any], now: int) -> tuple[list[str], list[str]]:
    """Drop the scratch databases of killed runs: (dropped, left in place)."""
    found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
                         (PREFIX.replace("_", r"\_") + "%",)).fetchall()
    dropped, left = [], []
    for (name,) in found:
        m = _NAME.match(name)
        if m is None or now - int(m[1]) < STALE_AFTER:
            continue  # not one of ours, or a run that is still starting
        try:
            # without FORCE: a database some session still uses (a killed run's last statement) stays
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
        except psycopg.Error:  # in use, or another role's: named to the user, never fatal
            left.append(name)
    return dropped, left


def drop(cfg: Config, name: str) -> None:
    """Drop the scratch database (its sessions too); a second Ctrl-C or SIGTERM does not cut the drop short."""
    shield = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)} if shield else {}
    try:
        with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except DbcliError as e:
        raise type(e)(f"cannot drop the scratch database {name}: {e.message}",
                      hint=f"drop it by hand: DROP DATABASE {name}", sqlstate=e.sqlstate) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
