"""The profile's PostgreSQL server as libpq keyword parameters, for psycopg and the libpq tools.

No driver at import: the libpq tools' path (``backup create`` runs psql and pg_dump) needs only
these parameters, and importing psycopg costs ~120 ms before pg_dump can start.
"""

from __future__ import annotations

from pathlib import Path

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import ConfigError
from dbcli.postgres import citus_local, embedded


def conn_params(cfg: Config, *, dbname: str | None = None) -> dict[str, str]:
    """The profile's server as libpq keyword parameters (starting the embedded one if needed).

    ``postgres.dsn`` is read by libpq itself; the profile's own settings override it. For psycopg
    (:func:`conninfo`) and for the libpq tools (pg_dump, psql) alike.
    """
    params: dict[str, str] = {}
    if cfg.postgres.dsn:
        # the driver (~120 ms) only when there is a connection string for libpq to read
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = {key: str(value) for key, value in conninfo_to_dict(cfg.postgres.dsn).items()}
        except psycopg.ProgrammingError as e:
            raise ConfigError(f"postgres.dsn is not a valid connection string: {redact_text(str(e)).strip()}") from None
    params.update(_settings(cfg, dbname))
    return params


def _settings(cfg: Config, dbname: str | None) -> dict[str, str]:
    """The connection settings the profile gives on top of its DSN."""
    pg = cfg.postgres
    params: dict[str, str] = {}
    if pg.embedded:
        db = pg.dbname or embedded.DEFAULT_DBNAME
        server = (citus_local.ensure_running(cfg, db) if citus_local.enabled(cfg)
                  else embedded.ensure_running(Path(pg.data_dir), db))
        params.update(server.conninfo(db))
    for key in ("host", "port", "dbname", "user", "password", "sslmode"):
        value = getattr(pg, key)
        if value is not None and not (pg.embedded and key in ("host", "port")):
            params[key] = str(value)
    if dbname:
        params["dbname"] = dbname
    params["connect_timeout"] = str(max(1, round(pg.connect_timeout)))
    params["application_name"] = pg.application_name
    return params
