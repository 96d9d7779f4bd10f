"""Versioned PostgreSQL migrations: the bookkeeping table, checksums and the advisory lock.

Every pending migration file runs in its own transaction together with its row in
``dbcli_schema_migrations``, so a migration is either applied and recorded, or neither. A
session-level advisory lock serialises concurrent appliers (two CI jobs at once): the second waits,
then finds everything recorded and applies nothing. Checksums of applied files are compared before
anything runs, so an edited history stops the run with nothing changed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from dbcli import __version__
from dbcli.config.model import Config
from dbcli.errors import ConflictError, DbcliError, InvalidInputError, LockedError, UnreachableError
from dbcli.postgres import connection as postgres
from dbcli.postgres.errors import errors_translated, translate
from dbcli.schema.files import Migration, migrations
from dbcli.schema.statements import error_line, has_statement, locate

TABLE = "dbcli_schema_migrations"
# pg_advisory_lock key shared by every dbcli process: the bytes "dbcli-sc" as a positive bigint
LOCK_KEY = int.from_bytes(b"dbcli-sc", "big")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS dbcli_schema_migrations (
    version       text        PRIMARY KEY,
    name          text        NOT NULL,
    checksum      text        NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    duration_ms   integer     NOT NULL,
    applied_by    text        NOT NULL DEFAULT current_user,
    dbcli_version text        NOT NULL
)
"""

Notify = Callable[[str], None]


@dataclass
class AppliedMigration:
    version: str
    name: str
    duration_ms: int


def pending(cfg: Config) -> list[Migration]:
    """The migrations not applied yet (after checking the applied ones are unchanged)."""
    files = migrations(cfg)
    with postgres.connect(cfg, autocommit=True) as conn, errors_translated(cfg):
        applied = _applied_rows(conn)
    _check_checksums(files, applied)
    todo = [m for m in files if m.version not in applied]
    check_not_empty(todo)
    return todo


def apply_pending(cfg: Config, say: Notify) -> list[AppliedMigration]:
    """Apply every pending migration, each in its own transaction, under the migration lock."""
    files = migrations(cfg)
    # One autocommit connection holds a session-level advisory lock for the whole run while each
    # migration commits in its own transaction: a transaction-level lock would be released at the
    # first commit and let a second applier interleave. The server drops the lock if we die.
    conn = postgres.connect(cfg, autocommit=True)
    try:
        with errors_translated(cfg):
            _lock(conn, say)
            conn.execute(CREATE_TABLE)
            applied = _applied_rows(conn)
        _check_checksums(files, applied)
        check_not_empty([m for m in files if m.version not in applied])
        done: list[AppliedMigration] = []
        for m in files:
            if m.version in applied:
                continue
            one = run_migration(cfg, conn, m, done)
            say(f"applied {m.path.name} ({one.duration_ms} ms)")
            done.append(one)
        return done
    finally:
        conn.close()  # also releases the advisory lock


def _lock(conn: psycopg.Connection, say: Notify) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    if row and row[0]:
        return
    say("another schema apply is running: waiting for it to finish")
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    except psycopg.errors.QueryCanceled:  # postgres.statement_timeout ran out while waiting
        raise LockedError("another schema apply holds the migration lock",
                          hint="wait for it to finish, or raise postgres.statement_timeout") from None


def _applied_rows(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """version -> bookkeeping row; empty when the table does not exist yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not exists or not exists[0]:
        return {}
    cur = conn.execute("SELECT version, name, checksum, applied_at, duration_ms FROM dbcli_schema_migrations")
    return {r[0]: {"version": r[0], "name": r[1], "checksum": r[2], "applied_at": r[3], "duration_ms": r[4]}
            for r in cur.fetchall()}


def _check_checksums(files: list[Migration], applied: dict[str, dict[str, Any]]) -> None:
    for m in files:
        row = applied.get(m.version)
        if row is not None and row["checksum"] != m.checksum:
            raise ConflictError(f"migration {display_path(m.path)} changed after it was applied; nothing was applied",
                                hint="restore the applied file and put the change in a new migration")


def check_not_empty(todo: list[Migration]) -> None:
    """Refuse a pending file with no statement (``schema new``'s header alone) before anything runs.

    Applied, it would be recorded with the empty file's checksum: the change written into it later
    would then count as an edited history (exit 7) instead of a pending migration.
    """
    for m in todo:
        if not has_statement(m.sql):
            raise InvalidInputError(f"migration {display_path(m.path)} has no SQL statement, only comments; "
                                    "nothing was applied",
                                    hint="write the change into it, or delete it, then run schema apply again")


def run_migration(cfg: Config, conn: psycopg.Connection, m: Migration,
                   earlier: list[AppliedMigration]) -> AppliedMigration:
    start = time.perf_counter()
    try:
        with conn.transaction():
            # the whole file in one simple-protocol query: no statement splitting can go wrong
            conn.execute(m.sql)  # trusted file content, no parameters
            ms = round((time.perf_counter() - start) * 1000)
            conn.execute("INSERT INTO dbcli_schema_migrations (version, name, checksum, duration_ms, dbcli_version)"
                         " VALUES (%s, %s, %s, %s, %s)", (m.version, m.name, m.checksum, ms, __version__))
    except psycopg.Error as e:
        raise _migration_error(cfg, conn, m, e, earlier) from e
    return AppliedMigration(m.version, m.name, ms)


def _migration_error(cfg: Config, conn: psycopg.Connection, m: Migration, e: Exception,
                     earlier: list[AppliedMigration]) -> DbcliError:
    err = translate(e, cfg)
    if isinstance(err, UnreachableError) and err.sqlstate is None:
        return err  # the connection is gone: nothing to locate
    line = error_line(m.sql, e)
    if line is None and not conn.closed:
        line = locate(conn, m.sql, err.sqlstate)
    where = f"{display_path(m.path)}:{line}" if line else display_path(m.path)
    cls: type[DbcliError] = type(err) if isinstance(err, ConflictError | InvalidInputError | UnreachableError) \
        else InvalidInputError
    before = f"; applied before it: {', '.join(f'{a.version}_{a.name}' for a in earlier)}" if earlier else ""
    return cls(f"migration {where} failed: {err.message}",
               hint=f"it was rolled back completely{before}", sqlstate=err.sqlstate)


def display_path(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def status_rows(cfg: Config) -> list[dict[str, Any]]:
    """Each migration file as applied, pending or changed, plus applied ones whose file is gone."""
    files = migrations(cfg)
    with postgres.connect(cfg, autocommit=True) as conn, errors_translated(cfg):
        applied = _applied_rows(conn)
    rows: list[dict[str, Any]] = []
    for m in files:
        row = applied.get(m.version)
        state = "pending" if row is None else ("applied" if row["checksum"] == m.checksum else "changed")
        rows.append(_migration_row(m.version, m.name, state, row["applied_at"] if row else None))
    known = {m.version for m in files}
    # applied from a file that is no longer in the directory: still part of the database's history
    for version, row in applied.items():
        if version not in known:
            rows.append(_migration_row(version, row["name"], "applied", row["applied_at"]))
    rows.sort(key=lambda r: (r["kind"] != "migration", int(r["version"])))
    return rows


def _migration_row(version: str, name: str, state: str, applied_at: dt.datetime | None) -> dict[str, Any]:
    return {"kind": "migration", "version": version, "name": name, "collection": None, "state": state,
            "applied_at": applied_at}
