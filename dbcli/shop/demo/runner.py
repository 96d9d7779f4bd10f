"""``dbcli demo``: every capability once, on the embedded default, narrated on stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dbcli.config.model import Config
from dbcli.errors import DbcliError, UnreachableError
from dbcli.mongo import embedded as local_mongo
from dbcli.output import Output
from dbcli.servers import health
from dbcli.shop.demo import activity, backup, documents, orders, reports, seed, tables

Step = Callable[[Config, Output], None]

# (title, step), in the order a new user would try them
STEPS: list[tuple[str, Step]] = [
    ("schema and sample data", seed.step),
    ("CRUD on a table", tables.step),
    ("an order placed in one transaction", orders.step),
    ("CRUD on a collection", documents.step),
    ("activity recording", activity.step),
    ("reports", reports.step),
    ("backup and verification", backup.step),
]
PING_COLUMNS = ["server", "status", "version", "rtt_ms", "target"]


def use_local_mongo_if_available(cfg: Config) -> bool:
    """With no MongoDB configured, use a local mongod/ferretdb when one is installed.

    Only for this run: the profile is not changed, so other commands still see no MongoDB.
    """
    if cfg.mongo.configured:
        return True
    try:
        local_mongo.find_binary(cfg)
    except DbcliError:
        return False
    cfg.mongo.embedded = True
    return True


def run(cfg: Config, out: Output) -> None:
    out.info("== the servers")
    configured = cfg.mongo.configured
    mongo = use_local_mongo_if_available(cfg)
    pings = health.ping_all(cfg)
    out.rows([p.as_row() for p in pings], PING_COLUMNS)
    down = [p for p in pings if p.status != "ok"]
    if down:
        raise UnreachableError(f"{down[0].server} is unreachable: {down[0].error}")
    if cfg.postgres.embedded:
        out.info(f"PostgreSQL data: {cfg.postgres.data_dir} (left running; `dbcli local stop` stops it)")
    if mongo and cfg.mongo.embedded:
        out.info(f"MongoDB-wire data: {cfg.mongo.data_dir}")
        if not configured:
            # other commands follow the profile: without this, they (and a restore test of the
            # demo's backup) find no MongoDB
            out.info("  (found and used by the demo only: set mongo.embedded: true for other commands to use it)")
    elif not mongo:
        out.info("no MongoDB-wire server found (mongod or ferretdb): the MongoDB steps are skipped")
    for title, step in STEPS:
        out.info(f"\n== {title}")
        step(cfg, out)
    out.info(f"\ndone. Configuration: {cfg.source or 'built-in profile ' + cfg.profile}; "
             f"data under {Path(cfg.postgres.data_dir).parent}")
