"""``schema diff``: the live schema against what the schema directory defines (drift).

PostgreSQL: the migrations are applied to a scratch database on the same server
(:mod:`dbcli.schema.scratch`), and the catalogs of both are compared (:mod:`dbcli.schema.pg_snapshot`).
MongoDB: the declared collections' indexes and validators against the live ones
(:mod:`dbcli.schema.mongo_diff`). Each difference is one row: object, kind, expected (what the schema
directory defines; null when it does not define the object), actual (the live database; null when
the object is missing there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import DbcliError
from dbcli.postgres import citus
from dbcli.postgres import connection as postgres
from dbcli.schema import mongo_diff
from dbcli.schema.apply import check_target, mongo_wanted
from dbcli.schema.files import migrations
from dbcli.schema.migrations import CREATE_TABLE, AppliedMigration, run_migration
from dbcli.schema.pg_snapshot import Item, Snapshot, snapshot
from dbcli.schema.scratch import Scratch, scratch_database

DIFF_COLUMNS = ["object", "kind", "expected", "actual"]
_FAMILY_ORDER = {"extension": 0, "type": 1, "relation": 2, "column": 3, "constraint": 4, "index": 5, "trigger": 6,
                 "function": 7}


@dataclass
class DiffResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    validators_supported: bool | None = None  # None: no MongoDB part ran
    notes: list[str] = field(default_factory=list)  # for the user, beside the rows

    def objects(self) -> list[str]:
        """The objects that differ, each once, in row order."""
        return list(dict.fromkeys(r["object"] for r in self.rows))


def diff(cfg: Config, target: str = "all") -> DiffResult:
    """Every difference between the live schema and the schema directory, as rows."""
    check_target(target)
    result = DiffResult()
    if target in ("postgres", "all") and migrations(cfg):
        result.rows += postgres_rows(cfg, result.notes)
    if mongo_wanted(cfg, target):
        rows, result.validators_supported = mongo_diff.rows(cfg)
        result.rows += rows
    return result


def postgres_rows(cfg: Config, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """The live database against the migrations applied to a scratch database; what the user should
    know about scratch databases left by killed runs goes to ``notes``."""
    files = migrations(cfg)
    with postgres.connect(cfg, autocommit=True) as live, postgres.errors_translated(cfg):
        # the catalogs print names outside the search path schema-qualified: both sides read alike
        row = live.execute("SELECT current_setting('search_path')").fetchone()
        search_path = str(row[0]) if row else "public"
        actual = snapshot(live)
        coordinator = citus.coordinator_address(live)
    with scratch_database(cfg) as scratch, postgres.connect(cfg, autocommit=True, dbname=scratch.name) as conn:
        if notes is not None:
            notes += leftover_notes(scratch)
        with postgres.errors_translated(cfg):
            if coordinator is not None:  # a Citus coordinator: the migrations' distribution runs in the scratch too
                citus.prepare_scratch(conn, coordinator)
            conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
            conn.execute(CREATE_TABLE)
        done: list[AppliedMigration] = []
        for m in files:
            try:
                done.append(run_migration(cfg, conn, m, done))
            except DbcliError as e:
                raise type(e)(f"applying the migrations to a scratch database: {e.message}",
                              hint="the migrations must apply to an empty database", sqlstate=e.sqlstate) from None
        with postgres.errors_translated(cfg):
            expected = snapshot(conn)
    return compare(expected, actual)


def leftover_notes(scratch: Scratch) -> list[str]:
    notes = []
    if scratch.dropped:
        notes.append(f"dropped {len(scratch.dropped)} scratch database(s) left by a killed schema diff: "
                     + ", ".join(scratch.dropped))
    if scratch.left:
        notes.append("scratch database(s) left by a killed schema diff, in use or owned by another role: "
                     + ", ".join(scratch.left) + "; drop them by hand (DROP DATABASE name)")
    return notes


def compare(expected: Snapshot, actual: Snapshot) -> list[dict[str, Any]]:
    """One row per object missing, unexpected, or defined otherwise; a missing or unexpected table
    is one row, not one more per column, index and constraint."""
    rows: list[dict[str, Any]] = []
    for key in sorted(expected.keys() | actual.keys(), key=lambda k: (k[1].split(".")[0], _FAMILY_ORDER[k[0]], k[1])):
        want, have = expected.get(key), actual.get(key)
        if want is not None and have is not None:
            rows += _changes(want, have)
            continue
        item = want or have
        assert item is not None
        if item.parent is not None and (("relation", item.parent) in expected) != (("relation", item.parent) in actual):
            continue  # its table is missing or unexpected as a whole: that row says it
        rows.append(_row(item.name, item.kind, want.summary if want else None, have.summary if have else None))
    return rows


def _changes(want: Item, have: Item) -> list[dict[str, Any]]:
    if want.kind != have.kind:
        return [_row(want.name, "kind", want.kind, have.kind)]
    rows: list[dict[str, Any]] = []
    differing: list[str] = []
    for (label, value), (_, live) in zip(want.attrs, have.attrs, strict=True):
        # "identity sequence" follows "identity": a column that lost its identity is one row, not two
        if value != live and not any(label.startswith(f"{d} ") for d in differing):
            differing.append(label)
            kind = f"{want.kind} {label}" if label and label != "definition" else want.kind
            rows.append(_row(want.name, kind, value, live))
    return rows


def _row(name: str, kind: str, expected: str | None, actual: str | None) -> dict[str, Any]:
    return {"object": name, "kind": kind, "expected": expected, "actual": actual}
