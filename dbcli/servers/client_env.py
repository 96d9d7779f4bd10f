"""What other clients (psql, pg_dump, mongosh, mongodump, a notebook) need to reach the profile's
servers: the PG* variables and the MongoDB URI, secrets masked unless asked for."""

from __future__ import annotations

import shlex

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.mongo.connection import uri as mongo_uri
from dbcli.postgres.params import conn_params

MASK = "***"
# libpq keyword -> the variable libpq (psql, pg_dump, psycopg, asyncpg...) reads
PG_VARIABLES = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
                "password": "PGPASSWORD", "sslmode": "PGSSLMODE"}


def client_env(cfg: Config, *, show_secrets: bool = False) -> dict[str, str]:
    """PG* variables for the profile's PostgreSQL (the socket directory as PGHOST for the embedded
    server), MONGODB_URI and MONGODB_DATABASE when a MongoDB is configured; passwords as ``***``
    unless ``show_secrets``."""
    params = conn_params(cfg)
    env = {var: params[key] for key, var in PG_VARIABLES.items() if params.get(key)}
    if "PGPASSWORD" in env and not show_secrets:
        env["PGPASSWORD"] = MASK
    if cfg.mongo.configured:
        uri = mongo_uri(cfg)
        env["MONGODB_URI"] = uri if show_secrets else redact_text(uri)
        env["MONGODB_DATABASE"] = cfg.mongo.database
    return env


def export_lines(env: dict[str, str]) -> list[str]:
    """``export NAME='value'`` lines a POSIX shell can ``eval``."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
