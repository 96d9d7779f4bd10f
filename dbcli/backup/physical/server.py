"""What the profile's server says about physical backups: can this profile take them (replication
rights, wal_level, WAL senders, WAL summaries for incrementals), and ``setup``, which turns WAL
archiving into the repository on (``dbcli wal setup``; automatic for the embedded server when
``backup.wal: true``).

A profile that cannot take a physical backup is told so before anything is written (exit 3).
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dbcli.backup.physical import location, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.physical.location import Root
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.store import private_dir
from dbcli.config.model import Config
from dbcli.errors import ConfigError
from dbcli.postgres import connection as postgres

_FACTS = """SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS version,
  current_setting('wal_level') AS wal_level, current_setting('max_wal_senders')::int AS senders,
  coalesce(current_setting('summarize_wal', true), 'unsupported') AS summarize_wal,
  current_setting('archive_mode') AS archive_mode, current_setting('archive_command') AS archive_command,
  (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS replication,
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
  current_user AS username"""


@dataclass
class ServerFacts:
    num: int
    version: str
    wal_level: str
    senders: int
    summarize_wal: str
    archive_mode: str
    archive_command: str
    replication: bool
    superuser: bool
    username: str

    @property
    def major(self) -> int:
        return self.num // 10000


def facts(cfg: Config) -> ServerFacts:
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        cur = conn.execute(_FACTS)
        row = cur.fetchone()
        names = [d.name for d in cur.description or []]
    assert row is not None
    values: dict[str, Any] = dict(zip(names, row, strict=True))
    return ServerFacts(**values)


def check_can_back_up(f: ServerFacts, *, incremental: bool) -> None:
    """ConfigError (exit 3) naming what stops this profile from taking a physical backup."""
    if not f.replication:
        raise ConfigError(f"role {f.username} has no REPLICATION privilege: it cannot take physical backups",
                          hint=f"ALTER ROLE {f.username} REPLICATION, and allow it in pg_hba.conf "
                          "(database 'replication'); or use logical backups (backup create)")
    if f.wal_level == "minimal":
        raise ConfigError("the server runs with wal_level = minimal: no physical backups",
                          hint="set wal_level = replica and restart the server")
    if f.senders < 1:
        raise ConfigError("the server has max_wal_senders = 0: no physical backups",
                          hint="set max_wal_senders (e.g. 10) and restart the server")
    if incremental:
        if f.major < 17:
            raise ConfigError(f"incremental backups need PostgreSQL 17 or later (the server runs {f.version})")
        if f.summarize_wal != "on":
            raise ConfigError("incremental backups need summarize_wal = on",
                              hint="dbcli wal setup (or ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf())")


@dataclass
class SetupResult:
    settings: dict[str, str]
    changed: list[str]
    restart_needed: bool

    def rows(self) -> list[dict[str, Any]]:
        return [{"setting": k, "value": v, "changed": k in self.changed} for k, v in self.settings.items()]


def wanted_settings(f: ServerFacts, root: Root, cfg: Config | None = None) -> dict[str, str]:
    wanted = {"wal_level": "replica" if f.wal_level == "minimal" else f.wal_level,
              "archive_mode": "on" if f.archive_mode == "off" else f.archive_mode,
              "archive_command": location.archive_command(cfg, root)}
    if f.major >= 17:
        wanted["summarize_wal"] = "on"
    return wanted


def setup(cfg: Config, root: Root) -> SetupResult:
    """ALTER SYSTEM the settings that archive WAL into ``root``; reload; say whether a restart is needed."""
    f = facts(cfg)
    if not f.superuser:
        raise ConfigError(f"role {f.username} is not a superuser: it cannot change archive settings",
                          hint="ask the server's administrator to set archive_command (see docs/pitr.md)")
    wanted = wanted_settings(f, root, cfg)
    current = {"wal_level": f.wal_level, "archive_mode": f.archive_mode, "archive_command": f.archive_command,
               "summarize_wal": f.summarize_wal}
    changed = [k for k, v in wanted.items() if current.get(k) != v]
    directory = None if isinstance(root, S3Repository) else private_dir(wal_archive.wal_dir(root))
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        if directory is not None:
            # the server (its archive_command) writes there: as root, that is the server's own user
            tools.give_to(directory, archiver(cfg, conn))
        for name in changed:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(wanted[name])))
        if changed:
            conn.execute("SELECT pg_reload_conf()")
        pending = conn.execute("SELECT count(*) FROM pg_settings WHERE name = ANY(%s) AND pending_restart",
                               (list(wanted),)).fetchone()
    restart = bool(pending and pending[0]) or any(k in changed for k in ("wal_level", "archive_mode"))
    return SetupResult(settings=wanted, changed=changed, restart_needed=restart)


def archiver(cfg: Config, conn: psycopg.Connection[Any]) -> pwd.struct_passwd | None:
    """As root, the user a local server's archive_command runs as: the owner of its data directory
    (``postgres`` for a distribution's server, not the embedded server's user); None for a remote one."""
    if not _local_server(cfg):
        return None
    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    return (tools.owner_of(Path(row[0])) if row else None) or tools.server_owner()


def _local_server(cfg: Config) -> bool:
    host = cfg.postgres.host or ""
    return cfg.postgres.embedded or not host or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")


def ensure_archiving(cfg: Config, root: Root) -> None:
    """For ``backup.wal: true``: archiving set up, or ConfigError (exit 3) saying a restart is needed."""
    if not cfg.backup.wal:
        return
    result = setup(cfg, root)
    if result.restart_needed:
        hint = ("dbcli local stop (the next command starts it with archiving on)" if cfg.postgres.embedded
                else "restart the PostgreSQL server")
        raise ConfigError(f"WAL archiving into {location.wal_text(root)} is configured: the server must "
                          "restart to apply it", hint=hint)
