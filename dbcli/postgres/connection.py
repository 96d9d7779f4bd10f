"""PostgreSQL connections: the profile's libpq parameters, connect, and a pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import make_conninfo

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import UnreachableError
from dbcli.postgres.errors import errors_translated, from_sqlstate, translate, unreachable
from dbcli.postgres.params import conn_params
from dbcli.postgres.watch import WatchedConnection

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# the error mapping is dbcli.postgres.errors'; callers that hold this module reach it here too
__all__ = ["conn_params", "connect", "conninfo", "errors_translated", "from_sqlstate", "make_pool",
           "server_version", "translate", "unreachable"]


def conninfo(cfg: Config, *, dbname: str | None = None) -> str:
    """:func:`conn_params` as one libpq conninfo string."""
    return make_conninfo(**conn_params(cfg, dbname=dbname))


def connect(cfg: Config, *, autocommit: bool = False, dbname: str | None = None) -> psycopg.Connection[Any]:
    info = conninfo(cfg, dbname=dbname)
    try:
        conn = WatchedConnection.connect(info, autocommit=autocommit)
    except psycopg.Error as e:
        raise translate(e, cfg) from None
    conn.watch(cfg.postgres.liveness_check, info)
    if cfg.postgres.statement_timeout:
        conn.execute("SELECT set_config('statement_timeout', %s, false)",
                     (f"{int(cfg.postgres.statement_timeout * 1000)}ms",))
        if not autocommit:
            conn.commit()
    return conn


def make_pool(cfg: Config, *, min_size: int | None = None, max_size: int | None = None
              ) -> ConnectionPool[WatchedConnection]:
    """A psycopg_pool pool sized from ``postgres.pool`` (opened; close it or use ``with``)."""
    # psycopg_pool costs ~6 ms more at start-up, and only long-running callers use a pool
    from psycopg_pool import ConnectionPool

    info = conninfo(cfg)
    pool = ConnectionPool(
        info,
        connection_class=WatchedConnection,
        configure=lambda conn: conn.watch(cfg.postgres.liveness_check, info),
        min_size=min_size or cfg.postgres.pool.min_size,
        max_size=max_size or cfg.postgres.pool.max_size,
        timeout=cfg.postgres.connect_timeout,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=cfg.postgres.connect_timeout)
    except Exception as e:
        pool.close()
        raise UnreachableError(f"cannot connect to PostgreSQL: {redact_text(str(e)).splitlines()[0]}") from None
    return pool


def server_version(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
