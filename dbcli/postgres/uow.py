"""The unit of work: one transaction on one (pooled) connection, committed on success, rolled
back on any exception, with the repositories and table gateways that work inside it.

    from dbcli.config.load import load_config
    from dbcli.postgres.tables import Filter
    from dbcli.postgres.uow import UnitOfWork

    with UnitOfWork(load_config()) as uow:
        user = uow.users.get(1)
        uow.table("products").update([Filter("sku", "=", "LAMP-1")], {"stock": 10})
    # committed here; an exception anywhere in the block rolls everything back
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dbcli.config.load import Config

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from dbcli.encryption.fields import Encryptor
    from dbcli.postgres.tables import TableGateway
    from dbcli.shop.repositories import OrderRepository, ProductRepository, UserRepository

_UNSET: Any = object()


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
    def __enter__(self) -> UnitOfWork:
        from dbcli.postgres import connection as postgres

        if self._encryptor is _UNSET:  # first: a config error must not leave a connection open
            from dbcli.postgres.tables import encryptor

            self._encryptor = encryptor(self.cfg)
        if isinstance(self._source, Config):
            self._conn = postgres.connect(self._source)
        elif hasattr(self._source, "getconn"):
            with postgres.errors_translated(self.cfg):
                self._conn = self._source.getconn()
        else:
            self._conn = self._source
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        import psycopg

        from dbcli.postgres import connection as postgres

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
                    raise postgres.translate(e, self.cfg) from e
            elif not conn.closed:
                with contextlib.suppress(psycopg.Error):  # keep the original error, not this one
                    conn.rollback()
        finally:
            self._release()
        if committed and written and self.cfg is not None:
            from dbcli.postgres.tables import note_write

            note_write(self.cfg, written)
        if isinstance(exc, psycopg.Error):
            # the driver's error as a dbcli error (sqlstate kept), after the rollback
            raise postgres.translate(exc, self.cfg) from exc

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
        from dbcli.postgres.catalog import describe
        from dbcli.postgres.tables import TableGateway

        if name not in self._gateways:
            self._gateways[name] = TableGateway(self.conn, describe(self.conn, name), encryptor=self.encryptor)
        return self._gateways[name]

    @property
    def users(self) -> UserRepository:
        from dbcli.shop.repositories import UserRepository

        return UserRepository(self)

    @property
    def products(self) -> ProductRepository:
        from dbcli.shop.repositories import ProductRepository

        return ProductRepository(self)

    @property
    def orders(self) -> OrderRepository:
        from dbcli.shop.repositories import OrderRepository

        return OrderRepository(self)
