"""Bring a MongoDB database in line with the declared collection specs, idempotently.

Creates missing collections and indexes and installs validators where the server supports them.
Never drops anything. Servers without validators (FerretDB) get client-side validation instead:
every dbcli writer validates documents against ``CollectionSpec.validate`` before writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbcli.mongo.connection import is_ferretdb
from dbcli.schema.files import CollectionSpec


@dataclass
class MongoChange:
    collection: str
    action: str  # create collection | create index | set validator | validator unsupported
    detail: str
    command: dict[str, Any] = field(default_factory=dict)


def plan(db: Any, specs: dict[str, CollectionSpec]) -> list[MongoChange]:
    """What ``apply`` would do, as commands; reads only."""
    current = {c["name"]: (c.get("options") or {}).get("validator") for c in db.list_collections()}
    existing = set(current)
    changes: list[MongoChange] = []
    for spec in specs.values():
        if spec.name not in existing:
            cmd: dict[str, Any] = {"create": spec.name}
            if spec.json_schema:
                cmd["validator"] = {"$jsonSchema": spec.json_schema}
            changes.append(MongoChange(spec.name, "create collection", spec.name, cmd))
            present: set[str] = set()
        else:
            present = {ix["name"] for ix in db[spec.name].list_indexes()}
            wanted = {"$jsonSchema": spec.json_schema}
            if spec.json_schema and current.get(spec.name) != wanted:
                changes.append(MongoChange(spec.name, "set validator", "collMod $jsonSchema",
                                           {"collMod": spec.name, "validator": wanted}))
        for ix in spec.indexes:
            if ix.name not in present:
                index: dict[str, Any] = {"key": dict(ix.keys), "name": ix.name, **ix.options}
                if ix.unique:
                    index["unique"] = True
                changes.append(MongoChange(spec.name, "create index", ix.name,
                                           {"createIndexes": spec.name, "indexes": [index]}))
    return changes


def apply(db: Any, specs: dict[str, CollectionSpec]) -> tuple[list[MongoChange], bool]:
    """Apply the plan; returns (changes made, whether the server enforces validators)."""
    # pymongo costs about 125 ms to import: `schema apply` loads this module even for PostgreSQL alone
    from pymongo.errors import OperationFailure

    done: list[MongoChange] = []
    # FerretDB 1 answers NotImplemented to a validator; FerretDB 2 accepts one on create but keeps
    # nothing and refuses it on collMod (Unknown $jsonSchema keyword: required): neither enforces one
    validators_supported = not is_ferretdb(db.client)
    for change in plan(db, specs):
        cmd = dict(change.command)
        if not validators_supported and "validator" in cmd:
            if change.action == "set validator":
                continue
            cmd.pop("validator")
        try:
            db.command(cmd)
        except OperationFailure as e:
            if e.code == 238 and "validator" in cmd:  # NotImplemented: FerretDB has no validators
                validators_supported = False
                if change.action == "set validator":
                    continue
                cmd.pop("validator")
                db.command(cmd)
            elif e.code == 48 and change.action == "create collection":  # created concurrently
                continue
            else:
                raise
        if change.action == "set validator" and not validators_supported:
            continue
        done.append(change)
    return done, validators_supported


def status(db: Any, specs: dict[str, CollectionSpec]) -> list[dict[str, Any]]:
    """One row per declared collection and index: present or missing."""
    existing = set(db.list_collection_names())
    rows: list[dict[str, Any]] = []
    for spec in specs.values():
        present = spec.name in existing
        rows.append({"kind": "collection", "collection": spec.name, "name": spec.name,
                     "state": "present" if present else "missing"})
        names = {ix["name"] for ix in db[spec.name].list_indexes()} if present else set()
        for ix in spec.indexes:
            rows.append({"kind": "index", "collection": spec.name, "name": ix.name,
                         "state": "present" if ix.name in names else "missing"})
    return rows
