"""The MongoDB half of ``schema apply`` and ``schema status``: the declared collections, their indexes
and validators, created when missing (idempotent, never drops anything; see :mod:`dbcli.mongo.validation`).
"""

from __future__ import annotations

from typing import Any

from dbcli.config.load import Config
from dbcli.mongo import connection as mongo
from dbcli.mongo import validation
from dbcli.mongo.validation import MongoChange
from dbcli.schema.files import collection_specs

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
                changes, supported = validation.apply(db, specs)
    finally:
        client.close()
    return changes, supported


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
