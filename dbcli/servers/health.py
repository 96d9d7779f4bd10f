"""Ping and wait: is each configured server answering, which version, how fast (on a Citus
coordinator: each worker too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import DbcliError, UnreachableError
from dbcli.mongo import connection as mongo
from dbcli.postgres import citus, citus_local
from dbcli.postgres import connection as postgres


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
    pg = cfg.postgres
    if pg.embedded:
        return f"embedded ({pg.data_dir})"
    if pg.dsn:
        return redact_text(pg.dsn)
    return f"{pg.host}:{pg.port or 5432}/{pg.dbname or ''}"


def ping_postgres(cfg: Config) -> Ping:
    return ping_postgres_nodes(cfg)[0]


def ping_postgres_nodes(cfg: Config) -> list[Ping]:
    """The server's row; on a Citus coordinator the Citus version and one row more per worker."""
    target = pg_target(cfg)
    if citus_local.enabled(cfg):
        citus_local.install_dir(cfg)  # no Citus build is a setup problem (exit 3), not a server that is down
    try:
        with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            rtt = (time.perf_counter() - start) * 1000
            version = f"PostgreSQL {postgres.server_version(conn)}"
            cluster = citus.cluster(conn, cfg.postgres.connect_timeout)
    except DbcliError as e:
        return [Ping("postgres", "unreachable", None, None, target, e.message)]
    if cluster is None:
        return [Ping("postgres", "ok", version, round(rtt, 3), target)]
    summary = f"{version}, Citus {cluster.citus_version}, {cluster.active}/{len(cluster.workers)} workers active"
    return [Ping("postgres", "ok", summary, round(rtt, 3), target),
            *(Ping("citus worker", "ok" if w.ok else "unreachable", None, None, w.address, w.error)
              for w in cluster.workers)]


def ping_mongo(cfg: Config) -> Ping:
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
        return ping_postgres_nodes(cfg)
    # side by side, so two unreachable servers cost one connect_timeout, not two
    with ThreadPoolExecutor(max_workers=2) as pool:
        pg, mg = pool.submit(ping_postgres_nodes, cfg), pool.submit(ping_mongo, cfg)
        return [*pg.result(), mg.result()]


def wait(cfg: Config, timeout: float, *,
         on_retry: Callable[[list[Ping], float], None] | None = None) -> list[Ping]:
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
