"""Running a PostgreSQL report: its SQL in a READ ONLY transaction under ``statement_timeout``.

This module imports psycopg: the CLI loads it only for a PostgreSQL report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg

from dbcli.config.model import Config
from dbcli.errors import ConfigError, ConflictError, DbcliError
from dbcli.postgres import connection as postgres
from dbcli.postgres.errors import matches, translate
from dbcli.reports.model import Report
from dbcli.reports.running import ReportResult, named, timeout_error, timeout_ms

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


def run(cfg: Config, report: Report, values: Mapping[str, Any]) -> ReportResult:
    """Run ``report`` (target postgres) with typed ``values``."""
    started = time.time()
    columns, rows = query(cfg, report, values)
    return ReportResult(report.name, columns, rows, computed_at=started)


def query(cfg: Config, report: Report, values: Mapping[str, Any], *, pool: ConnectionPool[Any] | None = None
          ) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's columns and rows; on a connection of ``pool`` (an application's, from
    ``connection.make_pool``) when given, else on a new connection."""
    assert report.sql is not None
    with read_only(cfg, report, pool) as cur:
        # prepare=True: the extended protocol, which runs exactly one statement. Without it psycopg
        # sends a report without placeholders as a simple query, where 'COMMIT; INSERT ...' would
        # end the read-only transaction and write.
        cur.execute(report.sql.encode(), dict(values), prepare=True)
        if cur.description is None:
            raise ConfigError(f"report {report.name!r}: the sql returns no rows (is it a SELECT?)")
        columns = [d.name for d in cur.description]
        if len(set(columns)) != len(columns):
            dupe = next(c for c in columns if columns.count(c) > 1)
            raise ConfigError(f"report {report.name!r} returns the column {dupe!r} twice",
                              hint="give the columns distinct aliases")
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    return columns, rows


@contextmanager
def read_only(cfg: Config, report: Report, pool: ConnectionPool[Any] | None = None) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor in a READ ONLY transaction under ``SET LOCAL statement_timeout`` (``reports.timeout``),
    always rolled back; driver errors come out as dbcli errors naming the report. A connection of
    ``pool`` goes back to it read-write and idle.
    """
    seconds = cfg.reports.timeout
    try:
        conn = pool.getconn() if pool is not None else postgres.connect(cfg)
    except psycopg.Error as e:  # the pool's timeout (PoolTimeout) is one
        raise _error(e, cfg, report, seconds) from None
    try:
        conn.read_only = True  # psycopg opens the transaction with BEGIN READ ONLY
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_ms(seconds)}ms",))
            yield cur
        conn.rollback()
    except psycopg.Error as e:
        raise _error(e, cfg, report, seconds) from None
    finally:
        if pool is None:
            conn.close()
        else:
            _give_back(pool, conn)


def _give_back(pool: ConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    try:
        conn.rollback()
        conn.read_only = False
    except psycopg.Error:
        conn.close()  # broken: the pool discards it
    pool.putconn(conn)


def _error(e: psycopg.Error, cfg: Config, report: Report, seconds: float) -> DbcliError:
    if matches(e, pg.QueryCanceled):
        return timeout_error(report, seconds)
    if matches(e, pg.ReadOnlySqlTransaction):
        return ConflictError(f"report {report.name!r} tried to write: refused by the read-only transaction",
                             sqlstate=e.sqlstate)
    if matches(e, pg.SyntaxError) and "multiple commands" in str(e):
        return ConfigError(f"report {report.name!r}: the sql must be a single statement",
                           hint="remove the ';' between statements")
    return named(report, translate(e, cfg))
