"""Status and stop of the profile's local servers (embedded PostgreSQL, local MongoDB-wire server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli import local_mongo, local_pg
from dbcli.config import Config


def status(cfg: Config) -> list[dict[str, Any]]:
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
    done: list[tuple[str, bool]] = []
    if cfg.postgres.embedded:
        done.append(("postgres", local_pg.stop(Path(cfg.postgres.data_dir))))
    mg_dir = Path(cfg.mongo.data_dir)
    if cfg.mongo.embedded or local_mongo.running(mg_dir):  # `dbcli demo` may have started one
        done.append(("mongo", local_mongo.stop(mg_dir)))
    return done
