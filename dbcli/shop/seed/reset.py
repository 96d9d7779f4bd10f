"""``dbcli seed --reset``: the shop's tables and activity collections emptied before seeding again.

The tables are truncated inside the seed's transaction, so a seed that fails leaves them as they
were. ``TRUNCATE`` without CASCADE: a table of the user's own that refers to the shop's tables
makes it fail (exit 7) rather than be emptied along with them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.mongo import connection as mongo
from dbcli.shop.activity.model import COLLECTIONS, JOURNAL
from dbcli.shop.seed.rows import PG_TABLES


def empty_tables(conn: psycopg.Connection) -> None:
    """Every shop table emptied in one statement (foreign keys among them allow no other way)."""
    present = [t for t in PG_TABLES
               if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]  # type: ignore[index]
    if present:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in present)))


def empty_collections(cfg: Config, db: Any = None) -> None:
    """The activity collections (and the journal of batches in flight) emptied, when a MongoDB is configured."""
    if not cfg.mongo.configured:
        return
    client = None if db is not None else mongo.client(cfg)
    try:
        with mongo.errors_translated():
            target = db if db is not None else mongo.database(cfg, client)
            for name in (*COLLECTIONS, JOURNAL):
                target[name].delete_many({})
    finally:
        if client is not None:
            client.close()
