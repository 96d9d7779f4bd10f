"""The unit of work: one transaction on one (pooled) connection, committed on success, rolled
back on any exception, with the table gateways that work inside it.

    from dbcli.config.load import load_config
    from dbcli.postgres.tables import Filter
    from dbcli.postgres.uow import UnitOfWork

    with UnitOfWork(load_config()) as uow:
        uow.table("products").update([Filter("sku", "=", "LAMP-1")], {"stock": 10})
    # committed here; an exception anywhere in the block rolls everything back

It knows no schema: an application builds its own repositories on top of it (the sample shop's
are in :mod:`dbcli.shop.unit_of_work`).
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg

from dbcli.cache import store as cache
from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.postgres import connection
from dbcli.postgres.catalog import describe
from dbcli.postgres.errors import errors_translated, translate
from dbcli.postgres.tables import TableGateway

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

_UNSET: Any = object()


def configured_encryptor(cfg: Config | None) -> Encryptor | None:
    """The configured encryptor, or None when no column is encrypted."""
    if cfg is None or not (cfg.encryption.columns or cfg.encryption.fields):
        return None
    return Encryptor.from_config(cfg)


class UnitOfWork:
    """``with UnitOfWork(cfg)`` (own connection), ``UnitOfWork(pool)`` (borrowed from a psycopg_pool
    pool) or ``UnitOfWork(conn)`` (an open connection, left open).

    With a ``cfg`` (given or passed as ``cfg=`` alongside a pool), the tables written are reported
    to the report cache after the commit, and configured encrypted columns are handled.
    """

    def __init__(self, source: Config | ConnectionPool | psycopg.Connection[Any], *, cfg: Config | None = None,
                 encryptor: Encryptor | None = _UNSET) -> None:
        self._source = source
        self.cfg = source if isinstance(source, Config) else cfg
        self._encryptor = encryptor
        self._conn: psycopg.Connection[Any] | None = None
        self._gateways: dict[str, TableGateway] = {}
        self.touched: set[str] = set()

    # -- the transaction
    def __enter__(self) -> Self:
        if self._encryptor is _UNSET:  # first: a config error must not leave a connection open
            self._encryptor = configured_encryptor(self.cfg)
        if isinstance(self._source, Config):
            self._conn = connection.connect(self._source)
        elif hasattr(self._source, "getconn"):
            with errors_translated(self.cfg):
                self._conn = self._source.getconn()
        else:
            self._conn = self._source
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        conn = self.conn
        committed = False
        written: list[str] = []
        if not conn.closed and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            # a result stream was left open (its reader failed: dbcli table find | head): the
            # stream holds the connection's lock, so commit or rollback would wait forever.
            # Closing the connection discards the transaction on the server, i.e. a rollback.
            conn.close()
            if exc_type is None:
                self._release()
                raise RuntimeError("a result stream was still open: the transaction was rolled back")
        try:
            if exc_type is None:
                written = self.written()
                try:
                    conn.commit()
                    committed = True
                except psycopg.Error as e:
                    raise translate(e, self.cfg) from e
            elif not conn.closed:
                with contextlib.suppress(psycopg.Error):  # keep the original error, not this one
                    conn.rollback()
        finally:
            self._release()
        if committed and written and self.cfg is not None:
            # the report cache's entries that read these tables are stale from now on
            cache.note_write(self.cfg, [f"postgres:{t}" for t in written])
        if isinstance(exc, psycopg.Error):
            # the driver's error as a dbcli error (sqlstate kept), after the rollback
            raise translate(exc, self.cfg) from exc

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._gateways.clear()
        if conn is None:
            return
        if isinstance(self._source, Config):
            conn.close()
        elif hasattr(self._source, "putconn"):
            self._source.putconn(conn)

    def written(self) -> list[str]:
        """Tables written so far in this unit of work."""
        return sorted(self.touched | {gw.table.display for gw in self._gateways.values() if gw.wrote})

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise RuntimeError("the unit of work is not active: use it in a with block")
        return self._conn

    # -- what works inside it
    @property
    def encryptor(self) -> Encryptor | None:
        return None if self._encryptor is _UNSET else self._encryptor

    def encrypt(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        return self.encryptor.encrypt_row(table, row) if self.encryptor else row

    def decrypt(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        return self.encryptor.decrypt_row(table, row) if self.encryptor else row

    def touch(self, *tables: str) -> None:
        """Note that these tables were written (the report cache is told after the commit)."""
        self.touched.update(tables)

    def table(self, name: str) -> TableGateway:
        """A gateway for any table of the catalog (exit 5 for an unknown name)."""
        if name not in self._gateways:
            self._gateways[name] = TableGateway(self.conn, describe(self.conn, name), encryptor=self.encryptor)
        return self._gateways[name]
