"""The PostgreSQL ``users`` an event refers to: its extended reference {name, tier}, checked before writing."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from dbcli.config.model import Config
from dbcli.errors import NotFoundError
from dbcli.postgres import connection as postgres
from dbcli.postgres.errors import errors_translated
from dbcli.shop.activity.model import Ref


def user_refs(cfg: Config, user_ids: Iterable[int]) -> dict[int, Ref]:
    """{user_id: {name, tier}} for the ids that exist in PostgreSQL ``users`` (one query)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    with postgres.connect(cfg, autocommit=True) as conn, errors_translated(cfg):
        try:
            rows = conn.execute("SELECT user_id, name, tier FROM users WHERE user_id = ANY(%s)", (ids,)).fetchall()
        except psycopg.errors.UndefinedTable:
            raise NotFoundError("table users does not exist", hint="run dbcli schema apply") from None
    return {int(uid): {"name": name, "tier": tier} for uid, name, tier in rows}
