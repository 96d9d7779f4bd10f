"""Collections as a whole: existence checks, the listing, indexes, and telling the cache of writes."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from dbcli.cache.store import note_write as cache_note_write
from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConflictError, InvalidInputError, NotFoundError
from dbcli.mongo.connection import session
from dbcli.mongo.query import check_name, parse_sort
from dbcli.schema.files import collection_specs, validator_for

if TYPE_CHECKING:
    from pymongo.database import Database

LIST_COLUMNS = ["collection", "documents", "indexes", "schema", "encrypted_fields"]
INDEX_COLUMNS = ["name", "keys", "unique", "declared"]


def existing(db: Database[dict[str, Any]], name: str) -> str:
    """``name`` if the collection exists, else exit 5 naming the closest match."""
    check_name(name)
    names = db.list_collection_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        raise InvalidInputError(f"unknown collection {name!r}",
                                hint=f"did you mean {close[0]!r}?" if close else "dbcli collection list shows them")
    return name


def note_write(cfg: Config, collection: str) -> None:
    """Tell the report cache that a collection changed."""
    cache_note_write(cfg, [f"mongo:{collection}"])


def collection_names(cfg: Config) -> list[str]:
    """The database's collections by name (system collections left out)."""
    with session(cfg) as db:
        return sorted(n for n in db.list_collection_names() if not n.startswith("system."))


def list_collections(cfg: Config) -> list[dict[str, Any]]:
    specs = collection_specs(cfg)
    enc = Encryptor.from_config(cfg)
    rows = []
    with session(cfg) as db:
        for name in sorted(db.list_collection_names()):
            if name.startswith("system."):
                continue
            coll = db[name]
            rows.append({
                "collection": name,
                "documents": coll.estimated_document_count(),
                "indexes": sum(1 for _ in coll.list_indexes()),
                "schema": "declared" if name in specs and specs[name].json_schema else "",
                "encrypted_fields": ", ".join(sorted(enc.fields_for(name))) if enc else "",
            })
    return rows


def list_indexes(cfg: Config, name: str) -> list[dict[str, Any]]:
    spec = validator_for(cfg, name)
    declared = {ix.name for ix in spec.indexes} if spec else set()
    with session(cfg) as db:
        existing(db, name)
        return [{"name": ix["name"], "keys": ", ".join(f"{k}:{_direction(d)}" for k, d in ix["key"].items()),
                 "unique": bool(ix.get("unique", False)), "declared": ix["name"] in declared}
                for ix in db[name].list_indexes()]


def _direction(d: Any) -> Any:
    return int(d) if isinstance(d, int | float) and not isinstance(d, bool) else d


def create_index(cfg: Config, name: str, keys_json: str, *, index_name: str | None = None,
                 unique: bool = False) -> str:
    keys = parse_sort(keys_json, "--create")
    if not keys:
        raise InvalidInputError("--create: name at least one field, as {\"field\": 1}")
    options: dict[str, Any] = {"unique": unique}
    if index_name:
        options["name"] = index_name
    with session(cfg) as db:
        existing(db, name)
        created = str(db[name].create_index(keys, **options))
    return created


def drop_index(cfg: Config, name: str, index_name: str) -> None:
    if index_name == "_id_":
        raise ConflictError("the _id_ index cannot be dropped")
    with session(cfg) as db:
        existing(db, name)
        names = [ix["name"] for ix in db[name].list_indexes()]
        if index_name not in names:
            close = difflib.get_close_matches(index_name, names, n=1, cutoff=0.5)
            raise NotFoundError(f"collection {name!r} has no index {index_name!r}",
                                hint=f"did you mean {close[0]!r}?" if close else None)
        db[name].drop_index(index_name)
