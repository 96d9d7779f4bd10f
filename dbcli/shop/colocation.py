"""Whether the shop's schema is distributed: on Citus, order lines and payments carry their user_id.

Migration 0005 adds ``user_id`` to ``order_items`` and ``payments`` only on a Citus coordinator
(the distribution column must be in every row, so that an order, its lines and its payments live
in one shard group). Writers supply it there; on plain PostgreSQL the columns do not exist.
"""

from __future__ import annotations

from typing import Any

import psycopg


def lines_carry_user(conn: psycopg.Connection[Any]) -> bool:
    """True when ``order_items`` has a ``user_id`` column (the shop schema on Citus)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('order_items')"
                       " AND attname = 'user_id' AND NOT attisdropped)").fetchone()
    return bool(row and row[0])
