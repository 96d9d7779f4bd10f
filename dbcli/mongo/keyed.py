"""Writes keyed on a field (``collection import --upsert-key``) that stay flat as the collection grows.

One ``UpdateOne({key: v}, {$set: doc}, upsert=True)`` per document is the obvious way, but FerretDB
2.7 + DocumentDB plans such an update, on a table PostgreSQL has not analyzed yet (a collection
just loaded), as a walk of the whole primary-key index: 20,000 upserts into 100,000 documents ran
at 320 documents/s, against 5,700/s into an empty collection (measured; docs/performance.md). A find
by the same key with ``$in`` uses the key's index, inserts and updates addressed by ``_id`` use the
primary key, and both stay flat. So a batch is written as:

1. one indexed read of which of its keys exist (and their ``_id``);
2. ``insert_many(ordered=False)`` of the documents whose key is new; for those refused as a
   duplicate key (a concurrent writer inserted that key meanwhile: the unique index on the key is
   the guard) the key is read again, and they are updated by ``_id`` as in 3 (an ``_id`` taken by
   another key stays a duplicate, as the upsert is refused);
3. ``UpdateOne({_id: ...}, {$set: doc})`` of the others, in commands of at most ``limit``
   statements (``dbcli.mongo.bulk``); if a document went away meanwhile, those are redone as keyed
   upserts. With ``parallel``, 2 and the two halves of 3 run on three connections at once.

A key value the lookup cannot map back exactly (an array, a subdocument, null, a Decimal128, NaN,
or an existing document holding an array under the key) goes straight to a keyed upsert. The
result has the shape of ``bulk_api_result`` (nUpserted counts the documents inserted, nMatched and
nModified the updated ones) and write errors index into the batch, as ``bulk_write`` raises them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bson
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from dbcli.mongo.bulk import bulk_write
from dbcli.mongo.query import dotted

DUPLICATE_KEY = 11000


def upserts(docs: list[dict[str, Any]], key: str) -> list[UpdateOne]:
    """One ``UpdateOne({key: value}, {$set: fields}, upsert=True)`` per document."""
    ops = []
    for doc in docs:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        update: dict[str, Any] = {"$set": fields} if fields else {}
        if "_id" in doc and key != "_id":
            update["$setOnInsert"] = {"_id": doc["_id"]}
        if not update:
            update = {"$setOnInsert": {"_id": doc["_id"]}}
        ops.append(UpdateOne({key: dotted(doc, key)}, update, upsert=True))
    return ops


def lookup_key(value: Any) -> Hashable | None:
    """What equal key values (as the server compares them) have in common, or None when not exact.

    Numbers compare by value across int, long and double (Python's ``==`` and hash agree); strings,
    ObjectIds, booleans and dates by their BSON (a date as UTC milliseconds, aware or naive).
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", value) if value == value else None  # NaN equals NaN on the server only
    if isinstance(value, str | bson.ObjectId | dt.datetime):
        return bson.encode({"k": value})
    return None


def write_keyed(coll: Any, docs: list[dict[str, Any]], key: str, limit: int, *, parallel: bool = False
                ) -> dict[str, Any]:
    """Insert or update each of ``docs`` (keys distinct) by its ``key``; see the module docstring.

    ``parallel``: the inserts and the updates of the batch on two connections at once (they touch
    different documents); not for FerretDB 1.x on SQLite, whose writers wait for one database lock.

    Raises BulkWriteError (with the summed result) when some documents were refused.
    """
    total = _empty()
    if key == "_id":  # the upserts are addressed by _id already
        return _done(coll, docs, list(range(len(docs))), key, limit, total)
    found, loose = _existing(coll, docs, range(len(docs)), key)
    fresh = [i for i in range(len(docs)) if i not in found and i not in loose]
    known = sorted(found.items())
    if parallel and len(known) > 1:
        # disjoint documents: the inserts and the two halves of the updates on three connections
        # (an update costs DocumentDB about twice an insert: the halves keep pace with the inserts)
        half = len(known) // 2
        parts = [_empty() for _ in range(3)]
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="dbcli-keyed") as pool:
            jobs = [pool.submit(_insert, coll, docs, fresh, key, limit, parts[0]),
                    pool.submit(_update_by_id, coll, docs, known[:half], key, limit, parts[1])]
            _update_by_id(coll, docs, known[half:], key, limit, parts[2])
            for job in jobs:
                job.result()
        for part in parts:
            for name in ("nMatched", "nModified", "nUpserted", "writeErrors", "writeConcernErrors"):
                total[name] += part[name]
    else:
        _insert(coll, docs, fresh, key, limit, total)
        _update_by_id(coll, docs, known, key, limit, total)
    return _done(coll, docs, sorted(loose), key, limit, total)


def _existing(coll: Any, docs: list[dict[str, Any]], indexes: Iterable[int],
              key: str) -> tuple[dict[int, Any], set[int]]:
    """One indexed read: {index: _id} of the documents of ``indexes`` whose key exists, and the indexes
    whose key the read cannot map back exactly (left to keyed upserts)."""
    wanted: dict[Hashable, int] = {}
    loose: set[int] = set()
    for i in indexes:
        k = lookup_key(dotted(docs[i], key))
        if k is None:
            loose.add(i)
        else:
            wanted[k] = i
    found: dict[int, Any] = {}
    if wanted:
        for doc in coll.find({key: {"$in": [dotted(docs[i], key) for i in wanted.values()]}}, {key: 1}):
            value = dotted(doc, key)
            k = lookup_key(value)
            if k is not None and k in wanted:
                found.setdefault(wanted[k], doc["_id"])
            elif isinstance(value, list):  # matched through one of its elements: let the server decide
                loose.update(wanted.pop(e) for e in map(lookup_key, value) if e is not None and e in wanted)
    return {i: _id for i, _id in found.items() if i not in loose}, loose


def _done(coll: Any, docs: list[dict[str, Any]], loose: list[int], key: str, limit: int,
          total: dict[str, Any]) -> dict[str, Any]:
    """The keyed upserts of ``loose``, then the result, raised as BulkWriteError if anything was refused."""
    _keyed_upserts(coll, docs, loose, key, limit, total)
    if total["writeErrors"] or total["writeConcernErrors"]:
        total["writeErrors"].sort(key=lambda err: int(err.get("index", 0)))
        raise BulkWriteError(total)
    return total


def _insert(coll: Any, docs: list[dict[str, Any]], indexes: list[int], key: str, limit: int,
            total: dict[str, Any]) -> None:
    if not indexes:
        return
    new = [_as_inserted(docs[i], key) for i in indexes]
    try:
        coll.insert_many(new, ordered=False)
        total["nUpserted"] += len(new)
        return
    except BulkWriteError as e:
        details = e.details
    total["nUpserted"] += int(details.get("nInserted", 0))
    errors = len(total["writeErrors"])
    _add_errors(total, details, indexes)
    # a duplicate: the key arrived meanwhile (read again, and updated by _id), or the _id is taken by
    # another key (the upsert was refused the same way: a duplicate, as before)
    dups = [int(err["index"]) for err in total["writeErrors"][errors:] if err.get("code") == DUPLICATE_KEY]
    found = _existing(coll, docs, dups, key)[0]
    total["writeErrors"] = [err for err in total["writeErrors"] if int(err["index"]) not in found]
    _update_by_id(coll, docs, sorted(found.items()), key, limit, total)


def _as_inserted(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The document a keyed upsert would have inserted: ``_id`` first, then the key, then the rest."""
    head: dict[str, Any] = {"_id": doc["_id"] if "_id" in doc else bson.ObjectId()}
    if key in doc:
        head[key] = doc[key]
    return {**head, **{k: v for k, v in doc.items() if k != "_id"}}


def _update_by_id(coll: Any, docs: list[dict[str, Any]], known: list[tuple[int, Any]], key: str, limit: int,
                  total: dict[str, Any]) -> None:
    if not known:
        return
    ops = [UpdateOne({"_id": _id}, {"$set": {k: v for k, v in docs[i].items() if k != "_id"}}) for i, _id in known]
    indexes = [i for i, _ in known]
    res: Mapping[str, Any]
    try:
        res = bulk_write(coll, ops, limit)
    except BulkWriteError as e:
        res = e.details
        _add_errors(total, res, indexes)
    matched = int(res.get("nMatched", 0))
    total["nModified"] += int(res.get("nModified", 0))
    refused = {indexes[int(err.get("index", 0))] for err in res.get("writeErrors") or []}
    if matched + len(refused) < len(known):
        # some went away between the read and the update: keyed upserts of these documents put those
        # back, and find the others as just updated; only their inserts count
        redo = _empty()
        again = [i for i in indexes if i not in refused]
        _keyed_upserts(coll, docs, again, key, limit, redo)
        total["nUpserted"] += redo["nUpserted"]
        matched = len(again) - redo["nUpserted"] - len(redo["writeErrors"])
        total["writeErrors"] += redo["writeErrors"]
    total["nMatched"] += matched


def _keyed_upserts(coll: Any, docs: list[dict[str, Any]], indexes: list[int], key: str, limit: int,
                   total: dict[str, Any]) -> None:
    if not indexes:
        return
    res: Mapping[str, Any]
    try:
        res = bulk_write(coll, upserts([docs[i] for i in indexes], key), limit)
    except BulkWriteError as e:
        res = e.details
        _add_errors(total, res, indexes)
    for name in ("nMatched", "nModified", "nUpserted"):
        total[name] += int(res.get(name, 0))


def _add_errors(total: dict[str, Any], res: Mapping[str, Any], indexes: list[int]) -> None:
    """The write errors of a sub-bulk over ``docs[indexes]``, their index translated to the batch's."""
    errors = res.get("writeErrors") or []
    total["writeErrors"] += [{**err, "index": indexes[int(err.get("index", 0))]} for err in errors]
    total["writeConcernErrors"] += res.get("writeConcernErrors") or []


def _empty() -> dict[str, Any]:
    return {"nInserted": 0, "nMatched": 0, "nModified": 0, "nUpserted": 0, "nRemoved": 0,
            "writeErrors": [], "writeConcernErrors": [], "upserted": []}
