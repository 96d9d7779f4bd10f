"""Parallel PostgreSQL restores: ``pg_restore -j N`` straight into the database, counted after.

What this gives up, and why: pg_restore runs its jobs in separate sessions, so it cannot run in one
transaction (``--single-transaction`` and ``-j`` exclude each other). The checks that the
one-transaction restore makes inside its transaction run here before and after instead: the
target is checked empty (unless ``drop``) and the server not newer than pg_restore before
anything is written, and the archive's checksums are checked by the caller before that; the rows
are counted once pg_restore has finished. A restore that fails or counts wrong leaves what it
wrote: restore into a new, empty database, and drop it on failure.

pg_restore reads the archive itself (a local, unencrypted file or directory: -j needs to seek).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from dbcli.backup import pg_compat
from dbcli.backup.liveness import Watchdog, io_bytes
from dbcli.backup.pg_dump_dir import run_watched
from dbcli.backup.pg_restore import PSQL_OPTIONS, DamagedArchive, Restored, outcome, refuse_target
from dbcli.backup.pg_restore_sql import closing_sql, opening_sql
from dbcli.backup.pg_tools import Tools, find_tools, libpq_connection, restore_error, tool_failure, tool_version
from dbcli.backup.repo import Blob
from dbcli.backup.stages import Progress
from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError, UsageError
from dbcli.postgres.params import conn_params


def restore(cfg: Config, source: Blob, *, jobs: int, drop: bool, tables: list[dict[str, Any]],
            dbname: str | None = None, no_owner: bool = False, own_rows: bool = False,
            use_list: Path | None = None, progress: Progress) -> Restored:
    """pg_restore -j ``jobs`` the local archive ``source`` into the profile's database (or ``dbname``)."""
    if source.local is None:
        raise UsageError("restore --jobs needs a backup in a local directory (object storage: drop --jobs)")
    tools = find_tools(cfg)
    restore_version, restore_major = tool_version(tools.pg_restore)
    refuse_older_server(cfg, dbname, restore_major)
    params = conn_params(cfg, dbname=dbname)
    args = [str(tools.pg_restore), f"--jobs={jobs}", "--exit-on-error", "--no-password"]
    if drop:
        args += ["--clean", "--if-exists"]
    if no_owner:
        args += ["--no-owner", "--no-privileges"]
    if use_list is not None:
        args.append(f"--use-list={use_list}")
    with libpq_connection(params) as (env, conn_arg), Watchdog(params, cfg.postgres.liveness_check) as watch:
        code, _lines, stderr = _psql(tools, env, conn_arg, watch,
                                     opening_sql(restore_major, check_empty=not drop) + b"COMMIT;\n")
        refuse_target(restore_version, stderr, params.get("dbname", "?"))
        if code != 0:
            raise tool_failure("psql", code, stderr)
        progress(f"postgres: restoring {source.name} with {jobs} jobs")
        code, text, _ = run_watched([*args, conn_arg, str(source.local)], env, watch, io_bytes, lambda: None,
                                    lambda: None)
        if code != 0:
            if "could not connect" in text or "connection to server" in text:
                raise tool_failure("pg_restore", code, text)
            if "input file" in text or "could not read" in text or "could not open" in text:
                raise DamagedArchive(source, f"pg_restore cannot read it: {restore_error(text)}")
            failed = tool_failure("pg_restore", code, text)
            raise DbcliError(f"{failed.message} (--jobs: the database keeps what was restored before it)",
                             hint="restore --jobs into a new database; drop it and try again")
        progress("postgres: counting the restored rows")
        code, lines, stderr = _psql(tools, env, conn_arg, watch, b"BEGIN;\n" + closing_sql(tables, own_rows))
    done = outcome(restore_version, code, stderr, lines)
    done.one_transaction = False
    return done


def refuse_older_server(cfg: Config, dbname: str | None, restore_major: int) -> None:
    """ConfigError (exit 3) before anything is written when pg_restore's jobs would send a setting the
    server refuses: they talk to the server themselves, so the prologue cannot be filtered as the
    one-transaction restore filters it (pg_compat)."""
    server_num = pg_compat.server_version_num(cfg, dbname)
    for since, line in pg_compat.REFUSED:
        if server_num < since <= restore_major * 10000:
            raise ConfigError(f"restore --jobs: pg_restore {restore_major} sends {line.decode()!r}, which "
                              f"PostgreSQL {server_num // 10000} refuses",
                              hint="restore without --jobs (one transaction; the script is adapted to the server)")


def _psql(tools: Tools, env: dict[str, str], conn_arg: str, watch: Watchdog,
          script: bytes) -> tuple[int, list[str], str]:
    proc = watch.guard(subprocess.Popen([str(tools.psql), *PSQL_OPTIONS, conn_arg], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**env, "PGCLIENTENCODING": "UTF8"}))
    out, err = proc.communicate(script)
    watch.raise_if_fired()
    return proc.returncode, out.decode(errors="replace").splitlines(), err.decode(errors="replace")
