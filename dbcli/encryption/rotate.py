"""``dbcli encryption rotate``: bring every encrypted value under the current key, in batches.

Columns: rows are walked in primary-key order (keyset pagination); each batch is one transaction
that locks its rows (``SELECT ... FOR UPDATE``), so a concurrent writer waits for at most one
batch and no value is rewritten from a stale read. Fields: documents are walked in ``_id`` order
and each batch is one unordered bulk write whose filters include the old value, so a document
changed meanwhile is left alone (and picked up by the next run).

Values already under the current key id are skipped, which makes a run idempotent and an
interrupted run resumable. Plain values (written before encryption was configured) are
encrypted on the way. Previous keys stay needed until a run reports nothing left to rotate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pymongo import UpdateOne

from dbcli.cache.store import note_write as note_table_write
from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor, is_token, map_paths
from dbcli.errors import ConfigError, InvalidInputError, UsageError
from dbcli.mongo.bulk import bulk_write, statement_limit
from dbcli.mongo.collections import note_write as note_collection_write
from dbcli.mongo.connection import session
from dbcli.postgres import catalog
from dbcli.postgres import connection as postgres
from dbcli.postgres.errors import errors_translated

COLUMNS = ["target", "kind", "scanned", "rotated", "encrypted", "current", "dry_run"]


@dataclass
class RotateCount:
    target: str  # table.column or collection.field
    kind: str  # column | field
    scanned: int = 0  # non-null values looked at
    rotated: int = 0  # tokens re-encrypted from an older key
    encrypted: int = 0  # plain values encrypted for the first time
    current: int = 0  # already under the current key: skipped
    dry_run: bool = False

    def as_row(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "scanned": self.scanned, "rotated": self.rotated,
                "encrypted": self.encrypted, "current": self.current, "dry_run": self.dry_run}

    def tally(self, enc: Encryptor, value: Any) -> bool:
        """Count ``value``; True when it needs rewriting."""
        if value is None:
            return False
        self.scanned += 1
        if not enc.needs_rotation(value):
            self.current += 1
            return False
        if is_token(value):
            self.rotated += 1
        else:
            self.encrypted += 1
        return True


def rotate(cfg: Config, *, batch_size: int = 500, dry_run: bool = False,
           on_batch: Callable[[str, int], None] | None = None) -> list[RotateCount]:
    """Re-encrypt every configured column and field under ``encryption.key``; counts per target."""
    enc = Encryptor.from_config(cfg)
    if enc is None:
        raise ConfigError("nothing to rotate: encryption.columns and encryption.fields are empty")
    if not enc.has_key:
        raise ConfigError("encryption.key is not set", hint="set the new key in encryption.key and move the "
                          "old one to encryption.previous_keys")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    counts: list[RotateCount] = []
    if enc.columns:
        counts += _rotate_columns(cfg, enc, batch_size, dry_run, on_batch)
    if enc.fields:
        counts += _rotate_fields(cfg, enc, batch_size, dry_run, on_batch)
    return counts


# ---- PostgreSQL --------------------------------------------------------------------------------

def _rotate_columns(cfg: Config, enc: Encryptor, batch_size: int, dry_run: bool,
                    on_batch: Callable[[str, int], None] | None) -> list[RotateCount]:
    out: list[RotateCount] = []
    with postgres.connect(cfg) as conn, errors_translated(cfg):
        for configured in sorted(enc.columns):
            table = catalog.describe(conn, configured)
            conn.commit()
            if table.display != configured:
                raise ConfigError(f"encryption.columns: name the table {table.display!r}, not {configured!r}")
            if table.relkind not in ("r", "p"):
                raise InvalidInputError(f"encryption.columns: {configured} is a {table.kind}, not a table")
            cols = [c.name for c in table.check_columns(sorted(enc.columns[configured]))]
            pk = table.primary_key
            if not pk:
                raise InvalidInputError(f"table {configured} has no primary key: cannot rotate it in batches")
            counts = {c: RotateCount(f"{configured}.{c}", "column", dry_run=dry_run) for c in cols}
            _rotate_table(conn, table, pk, cols, enc, counts, batch_size, dry_run, on_batch)
            out.extend(counts.values())
    if not dry_run:
        note_table_write(cfg, [f"postgres:{t}" for t in enc.columns])
    return out


def _rotate_table(conn: psycopg.Connection[Any], table: catalog.Table, pk: list[str], cols: list[str], enc: Encryptor,
                  counts: dict[str, RotateCount], batch_size: int, dry_run: bool,
                  on_batch: Callable[[str, int], None] | None) -> None:
    ident = table.ident()
    pk_list = sql.SQL(", ").join(sql.Identifier(c) for c in pk)
    select_cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*pk, *cols])
    placeholders = sql.SQL(", ").join(sql.Placeholder() for _ in pk)
    first = sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT %s FOR UPDATE").format(select_cols, ident, pk_list)
    after = sql.SQL("SELECT {} FROM {} WHERE ({}) > ({}) ORDER BY {} LIMIT %s FOR UPDATE").format(
        select_cols, ident, pk_list, placeholders, pk_list)
    update = sql.SQL("UPDATE {} SET {} WHERE ({}) = ({})").format(
        ident, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols),
        pk_list, placeholders)
    last: tuple[Any, ...] | None = None
    done = 0
    while True:
        with conn.transaction():
            if last is None:
                rows = conn.execute(first, (batch_size,)).fetchall()
            else:
                rows = conn.execute(after, (*last, batch_size)).fetchall()
            changes = []
            for row in rows:
                key, values = row[:len(pk)], list(row[len(pk):])
                dirty = False
                for i, col in enumerate(cols):
                    if counts[col].tally(enc, values[i]):
                        values[i] = enc.rotate_value("table", table.display, col, values[i])
                        dirty = True
                if dirty:
                    changes.append((*values, *key))
            if changes and not dry_run:
                with conn.cursor() as cur:
                    cur.executemany(update, changes)
        done += len(rows)
        if on_batch is not None and rows:
            on_batch(table.display, done)
        if len(rows) < batch_size:
            return
        last = tuple(rows[-1][:len(pk)])


# ---- MongoDB -----------------------------------------------------------------------------------

def _rotate_fields(cfg: Config, enc: Encryptor, batch_size: int, dry_run: bool,
                   on_batch: Callable[[str, int], None] | None) -> list[RotateCount]:
    out: list[RotateCount] = []
    with session(cfg) as db:
        names = set(db.list_collection_names())
        limit = statement_limit(db.client)
        for name in sorted(enc.fields):
            paths = sorted(enc.fields[name])
            counts = {p: RotateCount(f"{name}.{p}", "field", dry_run=dry_run) for p in paths}
            out.extend(counts.values())
            if name not in names:
                continue  # nothing stored yet
            coll = db[name]
            tops = sorted({p.split(".", 1)[0] for p in paths})
            projection = dict.fromkeys(tops, 1)
            last: Any = None
            done = 0
            while True:
                filt = {} if last is None else {"_id": {"$gt": last}}
                batch = list(coll.find(filt, projection, sort=[("_id", 1)], limit=batch_size))
                ops = []
                for doc in batch:
                    new = _rotated_doc(enc, name, paths, counts, doc)
                    if new is not None:
                        # the old values are part of the filter: a document changed meanwhile is skipped
                        old = {t: doc[t] for t in tops if t in doc}
                        ops.append(UpdateOne({"_id": doc["_id"], **old},
                                             {"$set": {t: new[t] for t in tops if t in new}}))
                if ops and not dry_run:
                    bulk_write(coll, ops, limit)  # FerretDB 1.x: at most 40 statements a command
                done += len(batch)
                if on_batch is not None and batch:
                    on_batch(name, done)
                if len(batch) < batch_size:
                    break
                last = batch[-1]["_id"]
    if not dry_run:
        for name in enc.fields:
            note_collection_write(cfg, name)
    return out


def _rotated_doc(enc: Encryptor, name: str, paths: list[str], counts: dict[str, RotateCount],
                 doc: dict[str, Any]) -> dict[str, Any] | None:
    """``doc`` with its encrypted fields under the current key, or None if nothing changes."""
    changed = False

    def fix(path: str, value: Any) -> Any:
        nonlocal changed
        if counts[path].tally(enc, value):
            changed = True
            return enc.rotate_value("collection", name, path, value)
        return value
    new = map_paths(doc, {p: p for p in paths}, fix)
    return new if changed else None
