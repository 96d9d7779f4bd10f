"""Demo step: apply the shop's schema and seed a small data set (once: reruns skip it)."""

from __future__ import annotations

from dbcli.config.model import Config
from dbcli.output import Output
from dbcli.schema import apply as schema
from dbcli.schema.mongo_collections import VALIDATORS_NOTE
from dbcli.shop.seed.events import mongo_empty
from dbcli.shop.seed.load import SUMMARY_COLUMNS, has_data, seed, summary_rows


def step(cfg: Config, out: Output) -> None:
    """Apply the schema to the embedded default and seed a small data set (once: reruns skip it)."""
    result = schema.apply(cfg, notify=out.info)
    if result.validators_supported is False:
        out.info(VALIDATORS_NOTE)
    out.info(f"schema: {len(result.applied)} migration(s) applied, {len(result.mongo_changes)} MongoDB "
             "change(s)" if result.changed_anything else "schema: up to date")
    if has_data(cfg):
        out.info("sample data already present: not seeding again")
        return
    events = 2000 if cfg.mongo.configured and mongo_empty(cfg) else 0
    counts = seed(cfg, users=100, products=40, orders=500, events=events, seed=1)
    out.info("seeded (dbcli seed --users 100 --products 40 --orders 500 --seed 1):")
    out.rows(summary_rows(counts), SUMMARY_COLUMNS, title="Sample data")
