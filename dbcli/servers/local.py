"""The local servers of a profile (the embedded PostgreSQL, a local mongod/FerretDB): status and stop.

Reads pid files and sockets only: no database driver is imported, so ``dbcli local status`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli.config.load import Config
from dbcli.mongo import embedded as local_mongo
from dbcli.postgres import embedded as local_pg


def status(cfg: Config) -> list[dict[str, Any]]:
    """One row per local server of the profile: running or stopped, pid, address, data dir, version."""
    rows: list[dict[str, Any]] = []
    pg_dir = Path(cfg.postgres.data_dir)
    if cfg.postgres.embedded:
        pg = local_pg.running(pg_dir)
        rows.append({
            "server": "postgres", "state": "running" if pg else "stopped",
            "pid": pg.pid if pg else None,
            "address": f"{pg.socket_dir}/.s.PGSQL.{pg.port}" if pg else None,
            "data_dir": str(pg_dir), "version": _pg_version(pg_dir),
        })
    mg_dir = Path(cfg.mongo.data_dir)
    if cfg.mongo.embedded or local_mongo.running(mg_dir):  # `dbcli demo` may have started one
        mg = local_mongo.running(mg_dir)
        rows.append({
            "server": "mongo", "state": "running" if mg else "stopped",
            "pid": mg.pid if mg else None, "address": mg.uri if mg else None,
            "data_dir": str(mg_dir), "version": f"{mg.kind} ({mg.binary})" if mg else None,
        })
    return rows


def _pg_version(data_dir: Path) -> str | None:
    v = local_pg.version(data_dir)
    return f"PostgreSQL {v}" if v else None


def stop(cfg: Config) -> list[tuple[str, bool]]:
    """Stop the profile's local servers: (server, whether it was running) each."""
    done: list[tuple[str, bool]] = []
    if cfg.postgres.embedded:
        done.append(("postgres", local_pg.stop(Path(cfg.postgres.data_dir))))
    mg_dir = Path(cfg.mongo.data_dir)
    if cfg.mongo.embedded or local_mongo.running(mg_dir):  # `dbcli demo` may have started one
        done.append(("mongo", local_mongo.stop(mg_dir)))
    return done
