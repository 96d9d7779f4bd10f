"""The profile's servers as a whole: ping and wait (is each answering, how fast), local status and stop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcli.config.load import Config
from dbcli.errors import DbcliError, UnreachableError
from dbcli.mongo import embedded as local_mongo
from dbcli.postgres import embedded as local_pg


@dataclass
class Ping:
    server: str
    status: str
    version: str | None
    rtt_ms: float | None
    target: str
    error: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {"server": self.server, "status": self.status, "version": self.version,
                "rtt_ms": self.rtt_ms, "target": self.target, "error": self.error}


def pg_target(cfg: Config) -> str:
    from dbcli.config.load import redact_text

    pg = cfg.postgres
    if pg.embedded:
        return f"embedded ({pg.data_dir})"
    if pg.dsn:
        return redact_text(pg.dsn)
    return f"{pg.host}:{pg.port or 5432}/{pg.dbname or ''}"


def ping_postgres(cfg: Config) -> Ping:
    from dbcli.postgres import connection as postgres

    target = pg_target(cfg)
    try:
        with postgres.connect(cfg, autocommit=True) as conn:
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            rtt = (time.perf_counter() - start) * 1000
            version = postgres.server_version(conn)
    except DbcliError as e:
        return Ping("postgres", "unreachable", None, None, target, e.message)
    return Ping("postgres", "ok", f"PostgreSQL {version}", round(rtt, 3), target)


def ping_mongo(cfg: Config) -> Ping:
    from dbcli.config.load import redact_text
    from dbcli.mongo import connection as mongo

    target = f"embedded ({cfg.mongo.data_dir})" if cfg.mongo.embedded else redact_text(cfg.mongo.uri or "")
    try:
        mc = mongo.client(cfg)
        try:
            with mongo.errors_translated():
                mc.admin.command("ping")
                start = time.perf_counter()
                mc.admin.command("ping")
                rtt = (time.perf_counter() - start) * 1000
                info = mongo.server_info(mc)
        finally:
            mc.close()
    except DbcliError as e:
        return Ping("mongo", "unreachable", None, None, target, e.message)
    return Ping("mongo", "ok", f"{info['flavour']} {info['version']}", round(rtt, 3), target)


def ping_all(cfg: Config) -> list[Ping]:
    if not cfg.mongo.configured:
        return [ping_postgres(cfg)]
    from concurrent.futures import ThreadPoolExecutor

    # side by side, so two unreachable servers cost one connect_timeout, not two
    with ThreadPoolExecutor(max_workers=2) as pool:
        pg, mg = pool.submit(ping_postgres, cfg), pool.submit(ping_mongo, cfg)
        return [pg.result(), mg.result()]


def wait(cfg: Config, timeout: float, *, on_retry: Any = None) -> list[Ping]:
    """Retry with exponential backoff until every server answers; UnreachableError on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        results = ping_all(cfg)
        down = [p for p in results if p.status != "ok"]
        if not down:
            return results
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(f"{p.server} ({p.error})" for p in down)
            raise UnreachableError(f"timed out after {timeout:g}s waiting for {names}")
        if on_retry:
            on_retry(down, delay)
        time.sleep(min(delay, left))
        delay = min(delay * 2, 5.0)

def local_status(cfg: Config) -> list[dict[str, Any]]:
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


def local_stop(cfg: Config) -> list[tuple[str, bool]]:
    done: list[tuple[str, bool]] = []
    if cfg.postgres.embedded:
        done.append(("postgres", local_pg.stop(Path(cfg.postgres.data_dir))))
    mg_dir = Path(cfg.mongo.data_dir)
    if cfg.mongo.embedded or local_mongo.running(mg_dir):  # `dbcli demo` may have started one
        done.append(("mongo", local_mongo.stop(mg_dir)))
    return done
