"""``dbcli demo``: every capability once, on the embedded default, narrated on stderr."""

from __future__ import annotations

import importlib
from pathlib import Path

from dbcli.config.load import Config
from dbcli.errors import DbcliError
from dbcli.output import Output

# (title, module holding ``demo_step(cfg, out)``), in the order a new user would try them
STEPS: list[tuple[str, str]] = [
    ("schema and sample data", "dbcli.shop.seed"),
    ("CRUD on a table", "dbcli.postgres.tables"),
    ("an order placed in one transaction", "dbcli.shop.orders"),
    ("CRUD on a collection", "dbcli.mongo.documents"),
    ("activity recording", "dbcli.shop.activity.model"),
    ("reports", "dbcli.reports.model"),
    ("backup and verification", "dbcli.backup.service"),
]


def use_local_mongo_if_available(cfg: Config) -> bool:
    """With no MongoDB configured, use a local mongod/ferretdb when one is installed."""
    if cfg.mongo.configured:
        return True
    from dbcli.mongo import embedded as local_mongo

    try:
        local_mongo.find_binary(cfg)
    except DbcliError:
        return False
    cfg.mongo.embedded = True
    return True


def run(cfg: Config, out: Output) -> None:
    from dbcli import servers as health

    out.info("== the servers")
    configured = cfg.mongo.configured
    mongo = use_local_mongo_if_available(cfg)
    pings = health.ping_all(cfg)
    out.rows([p.as_row() for p in pings], ["server", "status", "version", "rtt_ms", "target"])
    down = [p for p in pings if p.status != "ok"]
    if down:
        from dbcli.errors import UnreachableError

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
    for title, module_name in STEPS:
        module = importlib.import_module(module_name)
        out.info(f"\n== {title}")
        module.demo_step(cfg, out)
    out.info(f"\ndone. Configuration: {cfg.source or 'built-in profile ' + cfg.profile}; "
             f"data under {Path(cfg.postgres.data_dir).parent}")
