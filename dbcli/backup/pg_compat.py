"""Backups across PostgreSQL versions: which pg_restore can read an archive, which servers it can be
restored into, and what pg_restore's script says that an older server refuses.

- An archive is read only by a pg_restore at least as new as the pg_dump that wrote it (pg_restore
  15 stops on a pg_dump 18 archive with "unsupported version (1.16) in file header"). That is a
  tool to configure, not a damaged backup: ConfigError, exit 3.
- pg_dump's output is not meant to load into a server older than the one it was dumped from; such
  a restore is refused before anything is sent (exit 3).
- pg_restore writes its script for its own version. Since version 17 the settings every script
  starts with include ``SET transaction_timeout = 0;``, which PostgreSQL 15 and 16 reject
  ("unrecognized configuration parameter"). For a server older than a setting, its line is dropped
  from the script's prologue (the settings before the first object; ``REFUSED`` lists them).
  Nothing else in the script is changed.
"""

from __future__ import annotations

import re
from pathlib import Path

from dbcli.config.model import Config
from dbcli.errors import ConfigError
from dbcli.postgres import connection as postgres

# (first server_version_num that accepts it, the prologue line pg_restore writes)
REFUSED: list[tuple[int, bytes]] = [(170000, b"SET transaction_timeout = 0;")]

# the lines of a script's prologue: comments, psql's \restrict, settings, and with
# --single-transaction the BEGIN before them
_PROLOGUE_LINE = re.compile(rb"|--.*|\\restrict .*|SET .*;|SELECT pg_catalog\.set_config\(.*\);|BEGIN;")


def major(version: str | None) -> int | None:
    """18 from "18.6" or "15.18 (Debian 15.18-0+deb12u1)"; None when there is no number."""
    found = re.match(r"\s*(\d+)", version or "")
    return int(found.group(1)) if found else None


def server_version_num(cfg: Config, dbname: str | None = None) -> int:
    """The server's ``server_version_num`` (150018 for 15.18)."""
    with postgres.connect(cfg, autocommit=True, dbname=dbname) as conn, postgres.errors_translated(cfg):
        row = conn.execute("SHOW server_version_num").fetchone()
    return int(row[0]) if row else 0


def check_restore_tool(pg_restore: Path, version: tuple[str, int], dumped_by: str | None) -> None:
    """ConfigError (exit 3) when ``pg_restore`` is older than the pg_dump that wrote the archive."""
    need = major(dumped_by)
    if need is not None and version[1] < need:
        raise ConfigError(f"the archive was written by pg_dump {dumped_by}: it needs pg_restore >= {need} "
                          f"({pg_restore} is {version[0]})",
                          hint=f"set backup.pg_dump to a pg_dump {need} or later: pg_restore and psql "
                               "are taken from beside it")


def check_target(dumped_from: str | None, server_num: int) -> None:
    """ConfigError (exit 3) when the target server is older than the one the backup was dumped from."""
    source, target = major(dumped_from), server_num // 10000
    if source is not None and target < source:
        raise ConfigError(f"the backup holds a PostgreSQL {source} database: PostgreSQL {target} is older "
                          "and cannot restore it", hint=f"restore into PostgreSQL {source} or later")


def refused_lines(server_num: int) -> frozenset[bytes]:
    """The prologue lines a server of ``server_num`` rejects."""
    return frozenset(line for since, line in REFUSED if server_num < since)


class PrologueFilter:
    """Drops ``lines`` from the prologue of a script that arrives in blocks.

    ``feed`` is given the whole unsent buffer each time; it removes the refused lines of the
    prologue in place and says whether the prologue is over (until then nothing may be sent).
    """

    def __init__(self, lines: frozenset[bytes]) -> None:
        self.lines = lines
        self.done = not lines
        self.scanned = 0  # bytes of the buffer already looked at

    def feed(self, buf: bytearray, *, final: bool = False) -> bool:
        while not self.done:
            end = buf.find(b"\n", self.scanned)
            if end < 0:
                self.done = final
                break
            line = bytes(buf[self.scanned:end])
            if line in self.lines:
                del buf[self.scanned:end + 1]
            elif _PROLOGUE_LINE.fullmatch(line):
                self.scanned = end + 1
            else:
                self.done = True  # the first object: the prologue is over
        return self.done
