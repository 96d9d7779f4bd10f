"""``schema apply`` and ``schema status`` on both servers: PostgreSQL migrations, then MongoDB collections.

The PostgreSQL part is :mod:`dbcli.schema.migrations` (bookkeeping table, checksums, advisory
lock), the MongoDB part :mod:`dbcli.schema.mongo_collections`; this module picks the targets and
puts their results together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import ConfigError, UsageError
from dbcli.mongo.validation import MongoChange
from dbcli.schema import migrations as pg_migrations
from dbcli.schema import mongo_collections
from dbcli.schema.files import Migration
from dbcli.schema.migrations import AppliedMigration, Notify

TARGETS = ("postgres", "mongo", "all")
STATUS_COLUMNS = ["kind", "version", "name", "collection", "state", "applied_at"]
NOT_OK = ("pending", "changed", "missing")


@dataclass
class ApplyResult:
    dry_run: bool
    applied: list[AppliedMigration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # dry run: what would run
    mongo_changes: list[MongoChange] = field(default_factory=list)
    validators_supported: bool | None = None  # None: no MongoDB part ran

    @property
    def changed_anything(self) -> bool:
        return bool(self.applied or self.mongo_changes)

    def rows(self) -> list[dict[str, Any]]:
        """What ran (or would run), one row per migration or Mongo command."""
        rows: list[dict[str, Any]] = []
        for a in self.applied:
            rows.append({"target": "postgres", "item": f"{a.version}_{a.name}", "action": "applied migration",
                         "duration_ms": a.duration_ms, "sql": None, "command": None})
        for m in self.pending:
            rows.append({"target": "postgres", "item": f"{m.version}_{m.name}", "action": "apply migration",
                         "duration_ms": None, "sql": m.sql, "command": None})
        for c in self.mongo_changes:
            rows.append({"target": "mongo", "item": c.collection if c.action != "create index"
                         else f"{c.collection}.{c.detail}", "action": c.action, "duration_ms": None,
                         "sql": None, "command": c.command if self.dry_run else None})
        return rows


def apply(cfg: Config, target: str = "all", dry_run: bool = False, notify: Notify | None = None) -> ApplyResult:
    """Apply pending migrations and create missing collections/indexes (or only plan, with dry_run)."""
    check_target(target)
    say = notify or (lambda _msg: None)
    result = ApplyResult(dry_run=dry_run)
    if target in ("postgres", "all"):
        if dry_run:
            result.pending = pg_migrations.pending(cfg)
        else:
            result.applied = pg_migrations.apply_pending(cfg, say)
    if mongo_wanted(cfg, target):
        result.mongo_changes, result.validators_supported = mongo_collections.apply_collections(cfg, dry_run)
    return result


def status(cfg: Config, target: str = "all") -> list[dict[str, Any]]:
    """Migrations (applied/pending/changed) and collections/indexes (present/missing), as rows."""
    check_target(target)
    rows: list[dict[str, Any]] = []
    if target in ("postgres", "all"):
        rows.extend(pg_migrations.status_rows(cfg))
    if mongo_wanted(cfg, target):
        rows.extend(mongo_collections.status_rows(cfg))
    return rows


def problems(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of pending/changed/missing rows (empty when the schema is up to date)."""
    counts: dict[str, int] = {}
    for r in rows:
        if r["state"] in NOT_OK:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")


def mongo_wanted(cfg: Config, target: str) -> bool:
    if target == "mongo" and not cfg.mongo.configured:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return target in ("mongo", "all") and cfg.mongo.configured
