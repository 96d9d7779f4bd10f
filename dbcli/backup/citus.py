"""Backups of a Citus coordinator: the distribution recorded at backup time and recreated at restore.

pg_dump through the coordinator writes every distributed table as one ordinary table with all its
shards' rows; the distribution itself (which tables are reference tables, which are distributed on
which column, co-located with which) is in Citus's metadata, which the archive does not hold. So
``backup create`` records it in the manifest (``postgres.citus``), and ``backup restore`` into a
database that has the citus extension recreates it once pg_restore has committed: reference tables
first, then each co-location group (its first table, then the others ``colocate_with`` it), with
the foreign keys between those tables dropped before and added back after (Citus refuses to
distribute a table that a local table references, and vice versa). The rows are counted again on
the distributed tables. Restoring into a database without the extension needs ``--without-citus``
(the tables stay ordinary tables). Either way the archive's ``EXTENSION citus`` entries are left out:
a target with the extension keeps its own (``--drop`` would otherwise drop it, nodes and all).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from dbcli.backup import crypto as backup_crypto
from dbcli.backup.pg_tools import restore_error
from dbcli.backup.repo import Blob
from dbcli.child_process import die_with_parent
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, DbcliError
from dbcli.postgres import citus
from dbcli.postgres import connection as postgres
from dbcli.postgres.tools import find_tools

# the archive's entries of the extension (and of citus_columnar, which citus creates with it)
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ (EXTENSION|COMMENT) - (EXTENSION )?citus(_columnar)?( |$)")

def restore_session(recorded: dict[str, Any] | None, *, drop: bool) -> bytes:
    """SQL for the start of the restore's transaction into a Citus database (``recorded``; None:
    any other restore, nothing to add).

    The script runs with Citus's DDL propagation off: its tables are local until ``redistribute``,
    and a view that pg_dump writes twice (a stub, then the view once the key it depends on exists)
    would otherwise be sent to the workers as the stub and refused as the real one. With ``drop``,
    the recorded tables are dropped first with propagation on, shards and workers' copies included
    (pg_restore's own DROP, with propagation off, would leave those behind); in the same
    transaction, so a failed restore leaves them as they were.
    """
    if recorded is None:
        return b""
    head: sql.Composable = sql.SQL("")
    if drop and recorded.get("tables"):
        head = sql.SQL("DROP TABLE IF EXISTS {} CASCADE;\n").format(sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(t["schema"]), sql.Identifier(t["table"]))
            for t in recorded["tables"]))
    return (head + sql.SQL("SET citus.enable_ddl_propagation = off;\n")).as_string(None).encode()


def describe(cfg: Config) -> dict[str, Any] | None:
    """The distribution of the profile's database, for the manifest; None on plain PostgreSQL."""
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        found = citus.version(conn)
        if found is None:
            return None
        rows = conn.execute(
            "SELECT n.nspname, c.relname, t.citus_table_type, t.distribution_column, t.colocation_id,"
            " t.shard_count FROM citus_tables t JOIN pg_class c ON c.oid = t.table_name"
            " JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY t.colocation_id, c.oid").fetchall()
        settings = conn.execute(
            "SELECT s FROM pg_db_role_setting r, unnest(r.setconfig) s WHERE r.setrole = 0"
            " AND r.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND s LIKE 'citus.%' ORDER BY 1").fetchall()
    return {
        "version": found,
        "tables": [{"schema": r[0], "table": r[1], "type": r[2],
                    "column": None if r[3] in (None, "<none>") else r[3],
                    "colocation_id": r[4], "shard_count": r[5]} for r in rows],
        # per-database settings (ALTER DATABASE ... SET citus.x): pg_dump does not hold them
        "settings": dict(str(s[0]).split("=", 1) for s in settings),
    }


def has_extension(cfg: Config) -> bool:
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        return citus.version(conn) is not None


def check_target(cfg: Config, recorded: dict[str, Any] | None, *, without_citus: bool) -> bool:
    """Whether the restore must recreate the distribution; ConfigError (exit 3) for a backup of a
    Citus database going into one without the extension and without ``--without-citus``."""
    if not recorded or without_citus:
        return False
    if has_extension(cfg):
        return True
    raise ConfigError(
        "the backup is of a Citus database and the target database has no citus extension",
        hint="restore into a Citus coordinator (CREATE EXTENSION citus and its workers added), or pass "
             "--without-citus to restore ordinary tables into plain PostgreSQL")


class ListWithoutCitus:
    """A pg_restore list (``--use-list``) of the archive without the citus extension's entries; the
    file is removed with this object."""

    def __init__(self, cfg: Config, blob: Blob, key: bytes | None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dbcli-toc-")
        self.path = Path(self.dir.name) / "toc.list"
        tools = find_tools(cfg)
        feed = key is not None or blob.local is None
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([str(tools.pg_restore), "--list", *([] if feed else [str(blob.local)])],
                                    stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, preexec_fn=die_with_parent())
            feeder = threading.Thread(target=_feed, args=(blob, key, proc.stdin), daemon=True) if feed else None
            if feeder is not None:
                feeder.start()
            assert proc.stdout is not None
            listing = proc.stdout.read().decode(errors="replace")
            code = proc.wait()
            if feeder is not None:
                feeder.join()
            err.seek(0)
            if code != 0:
                raise CheckFailedError(f"{blob.name}: pg_restore cannot list it: "
                                       f"{restore_error(err.read().decode(errors='replace'))}")
        kept = [line for line in listing.splitlines() if not _EXTENSION_ENTRY.match(line)]
        self.path.write_text("\n".join(kept) + "\n")


def _feed(blob: Blob, key: bytes | None, sink: IO[bytes] | None) -> None:
    assert sink is not None
    with suppress(BrokenPipeError), blob.open() as fh:
        chunks = (backup_crypto.decrypt_chunks(fh, key) if key else iter(lambda: fh.read(1 << 20), b""))
        for chunk in chunks:
            sink.write(chunk)
    with suppress(BrokenPipeError):
        sink.close()


def redistribute(cfg: Config, recorded: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Recreate the recorded distribution in the profile's database, in one transaction; each
    recorded table's row count afterwards, read through the coordinator."""
    tables = recorded.get("tables") or []
    names = {(t["schema"], t["table"]) for t in tables}
    try:
        with postgres.connect(cfg) as conn, postgres.errors_translated(cfg):
            conn.execute("SET LOCAL citus.multi_shard_modify_mode = sequential")
            keys = _foreign_keys(conn, names)
            for schema, table, name, _ in keys:
                conn.execute(sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(name)))
            for t in tables:
                if t["type"] == "reference":
                    conn.execute("SELECT create_reference_table(%s)", (_qualified(t),))
            anchors: dict[Any, str] = {}
            for t in tables:
                if t["type"] != "distributed":
                    continue
                anchor = anchors.setdefault(t["colocation_id"], _qualified(t))
                if anchor == _qualified(t):  # a co-location group of its own, with its shard count
                    conn.execute("SELECT create_distributed_table(%s, %s, shard_count => %s, colocate_with => 'none')",
                                 (anchor, t["column"], t["shard_count"]))
                else:
                    conn.execute("SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                                 (_qualified(t), t["column"], anchor))
            for t in tables:
                if t["type"] in ("reference", "distributed"):
                    # the rows now live in the shards: the coordinator's local copy is dead weight
                    conn.execute("SELECT truncate_local_data_after_distributing_table(%s)", (_qualified(t),))
            for schema, table, name, definition in keys:
                conn.execute(sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} ").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(name)) + sql.SQL(definition))
            for setting, value in (recorded.get("settings") or {}).items():
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(conn.info.dbname), sql.Identifier(*setting.split(".")), sql.Literal(value)))
            counts = {}
            for t in tables:
                row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                    sql.Identifier(t["schema"]), sql.Identifier(t["table"]))).fetchone()
                counts[(t["schema"], t["table"])] = int(row[0]) if row else 0
    except DbcliError as e:
        raise DbcliError(f"restored, but the Citus distribution could not be recreated: {e.message}",
                         hint="the tables are ordinary tables on the coordinator; distribute them by hand "
                              "(docs/backups.md, Citus)") from None
    return counts


def _qualified(t: dict[str, Any]) -> str:
    return sql.SQL("{}.{}").format(sql.Identifier(t["schema"]), sql.Identifier(t["table"])).as_string(None)


def _foreign_keys(conn: psycopg.Connection[Any], names: set[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """(schema, table, constraint, definition) of every foreign key from or to a recorded table."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid), rn.nspname, r.relname"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace"
        " WHERE k.contype = 'f' ORDER BY k.oid").fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows
            if (r[0], r[1]) in names or (r[4], r[5]) in names]
