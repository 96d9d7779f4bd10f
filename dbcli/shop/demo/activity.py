"""Demo step: record a few events for seeded users and show their counters (skipped without MongoDB)."""

from __future__ import annotations

import datetime as dt

from dbcli.config.model import Config
from dbcli.output import Output
from dbcli.shop.activity.record import record
from dbcli.shop.activity.stats import STATS_COLUMNS, stats_row, user_stats
from dbcli.shop.activity.users import user_refs


def step(cfg: Config, out: Output) -> None:
    """Record a few events for seeded users and show their counters (skipped without MongoDB)."""
    if not cfg.mongo.configured:
        out.info("no MongoDB-wire server configured: activity recording skipped")
        return
    users = sorted(user_refs(cfg, range(1, 4)))
    if not users:
        out.info("no users in PostgreSQL (seed first): activity recording skipped")
        return
    base = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
    script = [("login", 0), ("page.view", 1), ("add_to_cart", 2), ("page.view", 3), ("logout", 9)]
    recorded = 0
    for uid in users:
        for kind, minute in script:
            at = (base + dt.timedelta(minutes=minute + uid)).isoformat()
            # fixed event ids: running the demo again records nothing twice
            result = record(cfg, uid, kind, at=at, event_id=f"demo-{uid}-{kind}-{minute}")
            recorded += result["recorded"]
    out.info(f"$ dbcli activity record --user {users[0]} --type page.view --at {base.isoformat()} ...  "
             f"({recorded} new events, {len(users) * len(script) - recorded} already recorded)")
    rows = [stats_row(user_stats(cfg, uid)) for uid in users]
    out.info(f"$ dbcli activity stats {users[0]}   (and the others)")
    out.rows(rows, STATS_COLUMNS, title="Activity counters")
