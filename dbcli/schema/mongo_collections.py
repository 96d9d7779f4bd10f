"""The MongoDB half of ``schema apply`` and ``schema status``: the declared collections, their indexes
and validators, created when missing (idempotent, never drops anything; see :mod:`dbcli.mongo.validation`).
"""

from __future__ import annotations

from typing import Any

from dbcli.config.model import Config
from dbcli.mongo import connection as mongo
from dbcli.mongo import validation
from dbcli.mongo.validation import MongoChange
from dbcli.schema.files import CollectionSpec, collection_specs

# what another process applying the same schema at the same moment makes a step fail with:
# NamespaceExists, IndexAlreadyExists, IndexOptionsConflict, IndexKeySpecsConflict
DONE_BY_ANOTHER = {48, 68, 85, 86}
DEADLOCK_RETRIES = 5
VALIDATORS_NOTE = ("note: this MongoDB-wire server does not support collection validators (FerretDB); "
                   "dbcli validates every document it writes against the same JSON Schema client-side")


def apply_collections(cfg: Config, dry_run: bool) -> tuple[list[MongoChange], bool | None]:
    """(changes made or planned, whether the server supports validators: None when unknown)."""
    specs = collection_specs(cfg)
    if not specs:
        return [], None
    supported: bool | None = None
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            if dry_run:
                changes = validation.plan(db, specs)
                if mongo.is_ferretdb(client):  # it would answer NotImplemented to every collMod
                    supported = False
                    changes = [c for c in changes if c.action != "set validator"]
            else:
                changes, supported = apply_concurrently(db, specs)
    finally:
        client.close()
    return changes, supported


def apply_concurrently(db: Any, specs: dict[str, CollectionSpec]) -> tuple[list[MongoChange], bool]:
    """``validation.apply``, safe when other processes apply the same specs at the same moment.

    A step another process has just done fails (NamespaceExists, or an index conflict when the
    other created the same index); the plan is then read again, and what is now present drops
    out of it. A failure that leaves the plan as long as before is a real conflict (an index of
    the same keys under another name, say) and is raised. FerretDB 2.x (DocumentDB) may also make
    one of several concurrent steps a PostgreSQL deadlock victim (InternalError "deadlock
    detected"): that step did nothing and is tried again, a few times.
    """
    # pymongo costs about 125 ms to import: `schema apply` loads this module even for PostgreSQL alone
    from pymongo.errors import OperationFailure

    left = _creations(db, specs)
    deadlocks = 0
    while True:
        try:
            return validation.apply(db, specs)
        except OperationFailure as e:
            if e.code == 1 and "deadlock detected" in str(e) and deadlocks < DEADLOCK_RETRIES:
                deadlocks += 1
                continue
            if e.code not in DONE_BY_ANOTHER:
                raise
            now = _creations(db, specs)
            if now >= left:
                raise
            left = now


def _creations(db: Any, specs: dict[str, CollectionSpec]) -> int:
    # validators are left out: a server without them (FerretDB) has "set validator" in every plan
    return sum(1 for c in validation.plan(db, specs) if c.action.startswith("create"))


def status_rows(cfg: Config) -> list[dict[str, Any]]:
    """Each declared collection and index as present or missing, in ``schema status`` rows."""
    specs = collection_specs(cfg)
    if not specs:
        return []
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            return [{"kind": r["kind"], "version": None, "name": r["name"], "collection": r["collection"],
                     "state": r["state"], "applied_at": None}
                    for r in validation.status(mongo.database(cfg, client), specs)]
    finally:
        client.close()
