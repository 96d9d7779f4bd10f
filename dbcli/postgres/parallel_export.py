"""``dbcli table export --jobs N``: block ranges of the table read side by side in one snapshot.

The coordinator exports its snapshot (``pg_export_snapshot``); each part's connection adopts it
(``SET TRANSACTION SNAPSHOT`` in a repeatable-read transaction) and exports the rows of one range
of heap blocks (``ctid``, a TID range scan) through the single-job export
(:func:`dbcli.postgres.copy_export.export_table`), so every part sees the same rows and writes
them in the same forms. A single-job export without --order-by reads the heap in block order,
so the parts written one after the other are the same bytes. The first part streams to the
output; the others are spooled to temporary files (memory stays flat) and appended in order.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import psycopg
from psycopg import sql

from dbcli.fsutil import append_file
from dbcli.postgres import connection
from dbcli.postgres.catalog import Table
from dbcli.postgres.copy_export import export_table
from dbcli.postgres.csv_options import CsvOptions
from dbcli.postgres.errors import translate
from dbcli.postgres.parallel_split import refuse
from dbcli.postgres.tables import Filter, TableGateway
from dbcli.postgres.uow import UnitOfWork

MIN_PART_BLOCKS = 128  # 1 MiB of heap: below this a part costs more than it saves


class BlockRangeGateway(TableGateway):
    """A gateway whose rows are those in heap blocks [first, stop) (stop None: to the end)."""

    def __init__(self, conn: psycopg.Connection[Any], table: Table, first: int, stop: int | None) -> None:
        super().__init__(conn, table)
        self.first, self.stop = first, stop

    def where_sql(self, filters: Sequence[Filter]) -> tuple[sql.Composed, list[Any]]:
        where, params = super().where_sql(filters)
        bounds = [sql.SQL("ctid >= %s::tid")]
        params = [*params, f"({self.first},0)"]
        if self.stop is not None:
            bounds.append(sql.SQL("ctid < %s::tid"))
            params.append(f"({self.stop},0)")
        return (where + sql.SQL(" AND ") if filters else sql.SQL(" WHERE ")) + sql.SQL(" AND ").join(bounds), \
            params


class _PartUnit(UnitOfWork):
    """The unit of work a part's export runs in: its connection, its block range."""

    def __init__(self, conn: psycopg.Connection[Any], gateway: TableGateway) -> None:
        super().__init__(conn, encryptor=None)
        self.gateway = gateway

    def table(self, name: str) -> TableGateway:
        return self.gateway


def export_table_jobs(uow: UnitOfWork, name: str, sink: IO[bytes], jobs: int, *, fmt: str = "csv",
                      filters: Sequence[Filter] = (), columns: Sequence[str] | None = None,
                      order_by: Sequence[str] = (), options: CsvOptions | None = None) -> int:
    """:func:`dbcli.postgres.copy_export.export_table` over up to ``jobs`` connections; the row count."""
    gw = uow.table(name)
    options = options or CsvOptions()
    for bad, reason in ((bool(order_by), "the parts are block ranges, read in table order, not --order-by's"),
                        (fmt == "json", "one JSON array is written by one reader (jsonl splits)"),
                        (gw.table.relkind not in ("r", "m"), f"{gw.table.display} is a {gw.table.kind}: "
                                                           "only a table's blocks can be split"),
                        (bool(gw.enc), f"{gw.table.display} has encrypted columns")):
        if bad:
            raise refuse(reason)
    snapshot, blocks = _snapshot(uow.conn, gw.table)
    parts = max(1, min(jobs, blocks // MIN_PART_BLOCKS))
    if parts == 1 or uow.cfg is None:
        return export_table(uow, name, sink, fmt=fmt, filters=filters, columns=columns, options=options)
    cuts = [blocks * k // parts for k in range(parts)]
    ranges = [(cuts[k], cuts[k + 1] if k + 1 < parts else None) for k in range(parts)]
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(_reader(uow.cfg, snapshot)) for _ in ranges]
        spools = [stack.enter_context(tempfile.TemporaryFile(prefix="dbcli-export-")) for _ in ranges[1:]]
        outs: list[IO[bytes]] = [sink, *spools]
        with cf.ThreadPoolExecutor(parts, thread_name_prefix="dbcli-export") as pool:
            futures = [pool.submit(export_table, _PartUnit(conn, BlockRangeGateway(conn, gw.table, *rng)), name,
                                   out, fmt=fmt, filters=filters, columns=columns,
                                   options=options if k == 0 else dataclasses.replace(options, header=False))
                       for k, (conn, rng, out) in enumerate(zip(conns, ranges, outs, strict=True))]
            try:
                done, _ = cf.wait(futures, return_when=cf.FIRST_EXCEPTION)
                failed = any(f.exception() is not None for f in done)
            except BaseException:  # Ctrl-C
                failed = True
                raise
            finally:
                if failed:  # stop every other COPY on the server
                    for conn in conns:
                        conn.cancel_safe(timeout=5)
        for future in futures:
            error = future.exception()
            if isinstance(error, psycopg.Error):
                raise translate(error) from error
            if error is not None:
                raise error
        for spool in spools:
            append_file(spool, sink)
        return sum(f.result() for f in futures)


def _snapshot(conn: psycopg.Connection[Any], table: Table) -> tuple[str, int]:
    """(exported snapshot id, heap blocks): blocks counted after the snapshot hold every row it sees."""
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    size = conn.execute(sql.SQL("SELECT pg_relation_size({}) / current_setting('block_size')::int").format(
        sql.Literal(table.ident().as_string(conn))), ).fetchone()
    return str(row[0]) if row else "", int(size[0]) if size else 0


def _reader(cfg: Any, snapshot: str) -> psycopg.Connection[Any]:
    conn = connection.connect(cfg)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    return conn
