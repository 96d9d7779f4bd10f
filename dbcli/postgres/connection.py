"""PostgreSQL connections: conninfo from the config, connect, pool, and driver-error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dbcli.config.load import Config, redact_text
from dbcli.errors import (
    ConflictError,
    DbcliError,
    InvalidInputError,
    NotFoundError,
    UnreachableError,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool


def conninfo(cfg: Config, *, dbname: str | None = None) -> str:
    """A libpq conninfo string for the profile's server (starting the embedded one if needed)."""
    from psycopg.conninfo import make_conninfo

    try:
        return make_conninfo(cfg.postgres.dsn or "", **_settings(cfg, dbname))
    except Exception as e:  # psycopg.ProgrammingError on a malformed DSN
        from dbcli.errors import ConfigError

        raise ConfigError(f"postgres.dsn is not a valid connection string: {redact_text(str(e)).strip()}") from None


def conn_params(cfg: Config, *, dbname: str | None = None) -> dict[str, str]:
    """``conninfo()`` as keyword/value pairs, for libpq tools (pg_dump, psql) that take them from PG* variables.

    The DSN is split without importing psycopg when it can be (see ``pg_conninfo``); a string that
    parser does not take goes to libpq itself, whose verdict and wording win.
    """
    from dbcli.postgres import conninfo as pg_conninfo

    try:
        base = pg_conninfo.parse(cfg.postgres.dsn or "")
    except ValueError:
        from psycopg.conninfo import conninfo_to_dict

        return {k: str(v) for k, v in conninfo_to_dict(conninfo(cfg, dbname=dbname)).items() if v is not None}
    return {**base, **_settings(cfg, dbname)}


def _settings(cfg: Config, dbname: str | None) -> dict[str, str]:
    """The connection settings the profile gives on top of its DSN."""
    pg = cfg.postgres
    params: dict[str, str] = {}
    if pg.embedded:
        from dbcli.postgres import embedded as local_pg

        server = local_pg.ensure_running(Path(pg.data_dir), pg.dbname or local_pg.DEFAULT_DBNAME)
        params.update(server.conninfo(pg.dbname or local_pg.DEFAULT_DBNAME))
    for key in ("host", "port", "dbname", "user", "password", "sslmode"):
        value = getattr(pg, key)
        if value is not None and not (pg.embedded and key in ("host", "port")):
            params[key] = str(value)
    if dbname:
        params["dbname"] = dbname
    params["connect_timeout"] = str(max(1, round(pg.connect_timeout)))
    params["application_name"] = pg.application_name
    return params


def connect(cfg: Config, *, autocommit: bool = False, dbname: str | None = None) -> psycopg.Connection:
    import psycopg

    info = conninfo(cfg, dbname=dbname)
    try:
        conn = psycopg.connect(info, autocommit=autocommit)
    except psycopg.Error as e:
        raise translate(e, cfg) from None
    if cfg.postgres.statement_timeout:
        conn.execute("SELECT set_config('statement_timeout', %s, false)",
                     (f"{int(cfg.postgres.statement_timeout * 1000)}ms",))
        if not autocommit:
            conn.commit()
    return conn


def make_pool(cfg: Config, *, min_size: int | None = None, max_size: int | None = None) -> ConnectionPool:
    """A psycopg_pool pool sized from ``postgres.pool`` (opened; close it or use ``with``)."""
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        conninfo(cfg),
        min_size=min_size or cfg.postgres.pool_min_size,
        max_size=max_size or cfg.postgres.pool_max_size,
        timeout=cfg.postgres.connect_timeout,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=cfg.postgres.connect_timeout)
    except Exception as e:
        pool.close()
        raise UnreachableError(f"cannot connect to PostgreSQL: {redact_text(str(e)).splitlines()[0]}") from None
    return pool


@contextmanager
def errors_translated(cfg: Config | None = None) -> Iterator[None]:
    """Turn driver errors raised inside the block into dbcli errors."""
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        raise translate(e, cfg) from e


def translate(e: Exception, cfg: Config | None = None) -> DbcliError:
    import psycopg

    text = redact_text(str(e).strip()).splitlines()[0] if str(e).strip() else type(e).__name__
    sqlstate = getattr(e, "sqlstate", None)
    diag = getattr(e, "diag", None)
    detail = redact_text(diag.message_detail) if diag is not None and diag.message_detail else None
    if isinstance(e, psycopg.OperationalError) and sqlstate is None:
        return unreachable(text, cfg)
    return from_sqlstate(sqlstate, text, detail)


def unreachable(text: str, cfg: Config | None = None) -> UnreachableError:
    """A failed connection attempt; ``text`` is libpq's (already redacted) message."""
    where = "the embedded PostgreSQL" if cfg and cfg.postgres.embedded else "PostgreSQL"
    return UnreachableError(f"cannot connect to {where}: {_short(text)}")


def from_sqlstate(sqlstate: str | None, text: str, detail: str | None = None) -> DbcliError:
    """The dbcli error for a server error, by its SQLSTATE; ``text`` and ``detail`` already redacted."""
    if detail and detail.startswith("Failing row contains"):
        detail = None  # the whole row's values: not for a one-line message (they may be personal data)
    cls: type[DbcliError]
    if sqlstate is None:
        cls = DbcliError
    elif sqlstate == "57014":
        return UnreachableError(f"statement timed out: {text}", sqlstate=sqlstate)
    elif sqlstate.startswith("08") or sqlstate.startswith("57P"):
        cls = UnreachableError
    elif sqlstate.startswith("23") or sqlstate in ("40001", "40P01", "25006", "55P03"):
        cls = ConflictError
    elif sqlstate.startswith("22") or sqlstate.startswith("42"):
        cls = InvalidInputError
    elif sqlstate == "3D000":
        cls = NotFoundError
    else:
        cls = DbcliError
    return cls(text, hint=detail, sqlstate=sqlstate)


def _short(text: str) -> str:
    # libpq repeats "connection to server at ... failed:" per address; keep the reason
    return text.replace("connection failed: ", "")


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
