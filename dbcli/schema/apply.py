"""``schema apply`` and ``schema status``: versioned PostgreSQL migrations plus the MongoDB collections.

PostgreSQL: every pending migration file runs in its own transaction together with its row in
``dbcli_schema_migrations``, so a migration is either applied and recorded, or neither. A
session-level advisory lock serialises concurrent appliers (two CI jobs at once): the second waits,
then finds everything recorded and applies nothing. Checksums of applied files are compared before
anything runs, so an edited history stops the run with nothing changed.

MongoDB: delegated to :mod:`dbcli.mongo.validation` (idempotent, never drops anything).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbcli.config.load import Config
from dbcli.errors import (
    ConfigError,
    ConflictError,
    DbcliError,
    InvalidInputError,
    LockedError,
    UnreachableError,
    UsageError,
)
from dbcli.schema.files import Migration

if TYPE_CHECKING:
    import psycopg

    from dbcli.mongo.validation import MongoChange

TARGETS = ("postgres", "mongo", "all")
TABLE = "dbcli_schema_migrations"
# pg_advisory_lock key shared by every dbcli process: the bytes "dbcli-sc" as a positive bigint
LOCK_KEY = int.from_bytes(b"dbcli-sc", "big")

_CREATE_TABLE = """
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


@dataclass
class ApplyResult:
    dry_run: bool
    applied: list[AppliedMigration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # dry run: what would run
    mongo_changes: list[MongoChange] = field(default_factory=list)
    validators_supported: bool | None = None  # None: no MongoDB part ran

    @property
    def changed_anything(self) -> bool:
        return bool(self.applied or self.mongo_changes)

    def rows(self) -> list[dict[str, Any]]:
        """What ran (or would run), one row per migration or Mongo command."""
        rows: list[dict[str, Any]] = []
        for a in self.applied:
            rows.append({"target": "postgres", "item": f"{a.version}_{a.name}", "action": "applied migration",
                         "duration_ms": a.duration_ms, "sql": None, "command": None})
        for m in self.pending:
            rows.append({"target": "postgres", "item": f"{m.version}_{m.name}", "action": "apply migration",
                         "duration_ms": None, "sql": m.sql, "command": None})
        for c in self.mongo_changes:
            rows.append({"target": "mongo", "item": c.collection if c.action != "create index"
                         else f"{c.collection}.{c.detail}", "action": c.action, "duration_ms": None,
                         "sql": None, "command": c.command if self.dry_run else None})
        return rows


# ---- apply -------------------------------------------------------------------------------------

def apply(cfg: Config, target: str = "all", dry_run: bool = False, notify: Notify | None = None) -> ApplyResult:
    """Apply pending migrations and create missing collections/indexes (or only plan, with dry_run)."""
    _check_target(target)
    say = notify or (lambda _msg: None)
    result = ApplyResult(dry_run=dry_run)
    if target in ("postgres", "all"):
        if dry_run:
            result.pending = _pending_postgres(cfg)
        else:
            result.applied = _apply_postgres(cfg, say)
    if _mongo_wanted(cfg, target):
        _apply_mongo(cfg, result, dry_run)
    return result


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")


def _mongo_wanted(cfg: Config, target: str) -> bool:
    if target == "mongo" and not cfg.mongo.configured:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return target in ("mongo", "all") and cfg.mongo.configured


def _pending_postgres(cfg: Config) -> list[Migration]:
    from dbcli.postgres import connection as postgres
    from dbcli.schema import files as schema_files

    files = schema_files.migrations(cfg)
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        applied = _applied_rows(conn)
    _check_checksums(files, applied)
    return [m for m in files if m.version not in applied]


def _apply_postgres(cfg: Config, say: Notify) -> list[AppliedMigration]:
    from dbcli.postgres import connection as postgres
    from dbcli.schema import files as schema_files

    files = schema_files.migrations(cfg)
    # One autocommit connection holds a session-level advisory lock for the whole run while each
    # migration commits in its own transaction: a transaction-level lock would be released at the
    # first commit and let a second applier interleave. The server drops the lock if we die.
    conn = postgres.connect(cfg, autocommit=True)
    try:
        with postgres.errors_translated(cfg):
            _lock(conn, say)
            conn.execute(_CREATE_TABLE)
            applied = _applied_rows(conn)
        _check_checksums(files, applied)
        done: list[AppliedMigration] = []
        for m in files:
            if m.version in applied:
                continue
            one = _run_migration(cfg, conn, m, done)
            say(f"applied {m.path.name} ({one.duration_ms} ms)")
            done.append(one)
        return done
    finally:
        conn.close()  # also releases the advisory lock


def _lock(conn: psycopg.Connection, say: Notify) -> None:
    import psycopg

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


def _run_migration(cfg: Config, conn: psycopg.Connection, m: Migration,
                   earlier: list[AppliedMigration]) -> AppliedMigration:
    import psycopg

    from dbcli import __version__

    start = time.perf_counter()
    try:
        with conn.transaction():
            # the whole file in one simple-protocol query: no statement splitting can go wrong
            conn.execute(m.sql)  # type: ignore[arg-type]  # trusted file content, no parameters
            ms = round((time.perf_counter() - start) * 1000)
            conn.execute("INSERT INTO dbcli_schema_migrations (version, name, checksum, duration_ms, dbcli_version)"
                         " VALUES (%s, %s, %s, %s, %s)", (m.version, m.name, m.checksum, ms, __version__))
    except psycopg.Error as e:
        raise _migration_error(cfg, conn, m, e, earlier) from e
    return AppliedMigration(m.version, m.name, ms)


def _migration_error(cfg: Config, conn: psycopg.Connection, m: Migration, e: Exception,
                     earlier: list[AppliedMigration]) -> DbcliError:
    from dbcli.postgres import connection as postgres

    err = postgres.translate(e, cfg)
    if isinstance(err, UnreachableError) and err.sqlstate is None:
        return err  # the connection is gone: nothing to locate
    line = error_line(m.sql, e)
    if line is None and not conn.closed:
        line = _locate(conn, m.sql, err.sqlstate)
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


# ---- locating a failed statement ---------------------------------------------------------------

def error_line(text: str, e: Exception) -> int | None:
    """Line in ``text`` of the server's error cursor (syntax errors and most analysis errors)."""
    diag = getattr(e, "diag", None)
    pos = getattr(diag, "statement_position", None) if diag is not None else None
    if not pos:
        return None
    # the server counts characters from 1 over the whole multi-statement string we sent
    return text.count("\n", 0, max(0, int(pos) - 1)) + 1


def _locate(conn: psycopg.Connection, text: str, sqlstate: str | None) -> int | None:
    """Re-run the file statement by statement in a rolled-back transaction to find the failing one.

    Only for errors without a cursor position (constraint violations, missing relations in DDL).
    The split is used for this diagnosis only; the migration itself always runs unsplit.
    """
    import psycopg

    statements = split_statements(text)
    if not statements:
        return None
    if len(statements) == 1:
        return text.count("\n", 0, statements[0][0]) + 1
    try:
        conn.execute("BEGIN")
        for start, end in statements:
            try:
                conn.execute(text[start:end])  # type: ignore[arg-type]
            except psycopg.Error as e:
                if e.sqlstate != sqlstate:
                    return None
                pos = getattr(e.diag, "statement_position", None)
                offset = start + (int(pos) - 1 if pos else 0)
                return text.count("\n", 0, offset) + 1
        return None
    except psycopg.Error:
        return None
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each statement: start at its first token, end after its ``;``.

    Understands comments (``--``, nested ``/* */``), quoted strings (``''``, ``E'\\''``),
    quoted identifiers and dollar quoting. Not SQL-standard ``BEGIN ATOMIC`` bodies.
    """
    out: list[tuple[int, int]] = []
    i, n, first = 0, len(text), -1
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if c == "/" and text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if c.isspace():
            i += 1
            continue
        if first < 0:
            first = i
        if c == "'":
            backslash = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i = _skip_quoted(text, i, "'", backslash)
        elif c == '"':
            i = _skip_quoted(text, i, '"', False)
        elif c == "$" and (m := _DOLLAR.match(text, i)) and (i == 0 or not (text[i - 1].isalnum()
                                                                            or text[i - 1] == "_")):
            end = text.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif c == ";":
            out.append((first, i + 1))
            first = -1
            i += 1
        else:
            i += 1
    if first >= 0:
        out.append((first, n))
    return out


def _skip_block_comment(text: str, i: int) -> int:
    depth, i, n = 0, i, len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and text[i + 1] == quote:  # doubled quote inside
                i += 2
                continue
            return i + 1
        i += 1
    return n


# ---- MongoDB -----------------------------------------------------------------------------------

def _apply_mongo(cfg: Config, result: ApplyResult, dry_run: bool) -> None:
    from dbcli.mongo import connection as mongo
    from dbcli.mongo import validation as mongo_schema
    from dbcli.schema import files as schema_files

    specs = schema_files.collection_specs(cfg)
    if not specs:
        return
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            if dry_run:
                changes = mongo_schema.plan(db, specs)
                if mongo.is_ferretdb(client):  # it would answer NotImplemented to every collMod
                    result.validators_supported = False
                    changes = [c for c in changes if c.action != "set validator"]
            else:
                changes, result.validators_supported = mongo_schema.apply(db, specs)
    finally:
        client.close()
    result.mongo_changes = changes


# ---- status ------------------------------------------------------------------------------------

STATUS_COLUMNS = ["kind", "version", "name", "collection", "state", "applied_at"]
NOT_OK = ("pending", "changed", "missing")


def status(cfg: Config, target: str = "all") -> list[dict[str, Any]]:
    """Migrations (applied/pending/changed) and collections/indexes (present/missing), as rows."""
    _check_target(target)
    rows: list[dict[str, Any]] = []
    if target in ("postgres", "all"):
        rows.extend(_postgres_status(cfg))
    if _mongo_wanted(cfg, target):
        from dbcli.mongo import connection as mongo
        from dbcli.mongo import validation as mongo_schema
        from dbcli.schema import files as schema_files

        specs = schema_files.collection_specs(cfg)
        if specs:
            client = mongo.client(cfg)
            try:
                with mongo.errors_translated():
                    for r in mongo_schema.status(mongo.database(cfg, client), specs):
                        rows.append({"kind": r["kind"], "version": None, "name": r["name"],
                                     "collection": r["collection"], "state": r["state"], "applied_at": None})
            finally:
                client.close()
    return rows


def _postgres_status(cfg: Config) -> list[dict[str, Any]]:
    from dbcli.postgres import connection as postgres
    from dbcli.schema import files as schema_files

    files = schema_files.migrations(cfg)
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
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


def problems(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of pending/changed/missing rows (empty when the schema is up to date)."""
    counts: dict[str, int] = {}
    for r in rows:
        if r["state"] in NOT_OK:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


VALIDATORS_NOTE = ("note: this MongoDB-wire server does not support collection validators (FerretDB); "
                   "dbcli validates every document it writes against the same JSON Schema client-side")
