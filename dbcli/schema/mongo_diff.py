"""The MongoDB half of ``schema diff``: each declared collection's indexes and validator against the
live ones. Collections the specs do not declare are not compared (a MongoDB database holds many
that no schema describes); on a declared collection, an index the spec does not name is reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dbcli.config.model import Config
from dbcli.mongo import connection as mongo
from dbcli.schema.files import CollectionSpec, IndexSpec, collection_specs

# what the server adds to every index description, or keeps for compatibility only
_NOT_COMPARED = {"v", "name", "ns", "background", "key"}


def rows(cfg: Config) -> tuple[list[dict[str, Any]], bool | None]:
    """(one row per difference, whether the server supports validators: None when nothing is declared)."""
    specs = collection_specs(cfg)
    if not specs:
        return [], None
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            # FerretDB has no validators: dbcli checks documents client-side against the same spec
            validators = not mongo.is_ferretdb(client)
            live = {c["name"]: c for c in db.list_collections()}
            found: list[dict[str, Any]] = []
            for spec in specs.values():
                info = live.get(spec.name)
                if info is None:
                    found.append(_row(spec.name, "collection", "collection", None))
                    continue
                found += _index_rows(spec, list(db[spec.name].list_indexes()))
                if validators:
                    found += _validator_rows(spec, (info.get("options") or {}).get("validator"))
            return found, validators
    finally:
        client.close()


def _index_rows(spec: CollectionSpec, live: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    have = {ix["name"]: _live_index(ix) for ix in live}
    found = []
    for ix in spec.indexes:
        want = _declared_index(ix)
        if have.get(ix.name) != want:
            found.append(_row(f"{spec.name}.{ix.name}", "collection index", _text(want),
                              _text(have[ix.name]) if ix.name in have else None))
    declared = {ix.name for ix in spec.indexes}
    for name, description in sorted(have.items()):
        if name != "_id_" and name not in declared:
            found.append(_row(f"{spec.name}.{name}", "collection index", None, _text(description)))
    return found


def _validator_rows(spec: CollectionSpec, live: Any) -> list[dict[str, Any]]:
    want = {"$jsonSchema": spec.json_schema} if spec.json_schema else None
    if _plain(live or None) == _plain(want):
        return []
    return [_row(spec.name, "collection validator", _text(want) if want else None, _text(live) if live else None)]


def _declared_index(ix: IndexSpec) -> dict[str, Any]:
    return _plain({"key": list(ix.keys), "unique": ix.unique, **ix.options})


def _live_index(ix: Mapping[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in ix.items() if k not in _NOT_COMPARED}
    options.setdefault("unique", False)
    return _plain({"key": list(ix["key"].items()), **options})


def _plain(value: Any) -> Any:
    """BSON numbers as the JSON a spec file holds (1.0, Int64(1) and 1 alike); index keys are lists of
    pairs, as their order matters where that of other fields does not."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, dict) and "key" in value:  # an index: its keys first, as createIndexes takes them
        keys = ", ".join(f"{k}: {v}" for k, v in value["key"])
        rest = {k: v for k, v in value.items() if k != "key" and not (k == "unique" and v is False)}
        return f"{{{keys}}}" + (f" {json.dumps(rest, sort_keys=True)}" if rest else "")
    return json.dumps(_plain(value), sort_keys=True)


def _row(name: str, kind: str, expected: str | None, actual: str | None) -> dict[str, Any]:
    return {"object": name, "kind": kind, "expected": expected, "actual": actual}
