"""Documents of a collection: insert, find, count, update and delete.

Documents written by dbcli are checked against the collection's declared JSON Schema before
anything is sent, on MongoDB and FerretDB alike (FerretDB enforces no validators); an update is
evaluated client-side (``update_sim``) to check the documents it would leave. Fields named in
``encryption.fields`` are encrypted on the way in and decrypted on the way out.

Bulk import and export live in ``importer`` and ``exporter``; parsing of what the user typed in
``query``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import bson
from bson import ObjectId
from pymongo.errors import BulkWriteError

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConflictError, DbcliError, InvalidInputError, UsageError
from dbcli.mongo import connection, update_sim
from dbcli.mongo.collections import existing, note_write
from dbcli.mongo.connection import max_document_size, session, too_large, translated
from dbcli.mongo.json_schema import Problem, schema_checker
from dbcli.mongo.query import Query, check_name, check_query
from dbcli.mongo.topology import atomic
from dbcli.output import to_json

# documents updated per request once they were validated one by one (the ids go into an $in)
ID_CHUNK = 1000


# ---- insert ------------------------------------------------------------------------------------

def prepare(cfg: Config, name: str, docs: list[dict[str, Any]], *, where: Callable[[int], str] | None = None
            ) -> list[dict[str, Any]]:
    """Validate every document (plain text) against the schema, then encrypt; raises before any write."""
    problem = schema_checker(cfg, name)
    label = where or (lambda i: f"document {i + 1}" if len(docs) > 1 else "document")
    if problem is not None:
        for i, doc in enumerate(docs):
            found = problem(doc)
            if found:
                raise InvalidInputError(f"{label(i)} violates the {name} schema: {found}; nothing was inserted")
    enc = Encryptor.from_config(cfg)
    if enc is not None and enc.fields_for(name):
        docs = [enc.encrypt_doc(name, d) for d in docs]
    return docs


def insert(cfg: Config, name: str, docs: list[dict[str, Any]], *, lines: list[int] | None = None
           ) -> list[dict[str, Any]]:
    """Insert documents (ordered: stops at the first server error); returns them with their _id.

    A collection that does not exist yet is created, as mongosh does. ``lines`` (input line
    numbers) make error messages name the line instead of the position.
    """
    check_name(name)
    if not docs:
        raise InvalidInputError("no document to insert")
    for d in docs:
        d.setdefault("_id", ObjectId())  # the caller gets the ids even though encryption copies the dicts
    where = (lambda i: f"line {lines[i]}") if lines else None
    stored = prepare(cfg, name, docs, where=where)
    with session(cfg) as db, translated(stored):
        check_sizes(stored, max_document_size(db), where or (lambda i: f"document {i + 1}"))
        in_transaction = False
        try:
            # all or nothing where the server has transactions (a replica set, mongos); one
            # document is atomic anyway, and asking the server costs a round trip
            with atomic(cfg, db.client) if len(stored) > 1 else nullcontext() as s:
                in_transaction = s is not None
                db[name].insert_many(stored, ordered=True, session=s)
        except BulkWriteError as e:
            done = 0 if in_transaction else int(e.details.get("nInserted", 0))
            if done:
                note_write(cfg, name)
            raise _write_error(e, lines, done) from None
    note_write(cfg, name)
    return docs


def check_sizes(docs: list[dict[str, Any]], limit: int, label: Callable[[int], str]) -> None:
    """Refuse the lot when one document is over the server's size limit (before anything is sent)."""
    for i, doc in enumerate(docs):
        size = len(bson.encode(doc))
        if size > limit:
            raise InvalidInputError(f"{label(i)}: {too_large(size, limit)}; nothing was inserted")


def _write_error(e: Any, lines: list[int] | None, done: int) -> DbcliError:
    """The first write error of an ordered insert, naming its document or line."""
    err = (e.details.get("writeErrors") or [{}])[0]
    at = int(err.get("index", done))
    label = f"line {lines[at]}" if lines and at < len(lines) else f"document {at + 1}"
    before = f" ({done} document(s) before it were inserted)" if done else " (nothing was inserted)"
    if err.get("code") == 11000:
        return ConflictError(f"{label}: duplicate key{before}")
    text = redact_text(str(err.get("errmsg", "rejected"))).splitlines()[0][:200]
    return InvalidInputError(f"{label}: rejected by the server: {text}{before}")


# ---- find, count -------------------------------------------------------------------------------

def find(cfg: Config, name: str, query: Query, *, on_done: Callable[[Encryptor | None], None] | None = None
         ) -> Iterator[dict[str, Any]]:
    """The matching documents, decrypted, as a stream that closes its client at the end.

    The collection check and the first batch happen before this returns, so an unknown
    collection or a filter the server rejects fails before anything is printed.
    """
    if query.limit < 0 or query.skip < 0:
        raise UsageError("--limit and --skip must not be negative")
    enc = Encryptor.from_config(cfg)
    decrypt = enc.decrypt_doc if enc is not None and enc.fields_for(name) else None
    check_query(enc, name, query.filter, query.sort)
    mc = connection.client(cfg)
    try:
        with translated(query.filter):
            existing(mc[cfg.mongo.database], name)
            cursor = mc[cfg.mongo.database][name].find(query.filter, query.projection, skip=query.skip,
                                                       limit=query.limit, sort=query.sort, batch_size=1000)
            first = next(cursor, None)
    except BaseException:
        mc.close()
        raise
    return stream(mc, cursor, first, name, decrypt, lambda: on_done(enc) if on_done is not None else None)


def stream(mc: Any, cursor: Any, first: dict[str, Any] | None, name: str,
           decrypt: Callable[[str, dict[str, Any]], dict[str, Any]] | None, done: Callable[[], Any]
           ) -> Iterator[dict[str, Any]]:
    """Yield ``first`` then the rest of ``cursor`` (decrypted), closing the client at the end."""
    try:
        if first is None:
            return
        with translated():
            yield decrypt(name, first) if decrypt else first
            for doc in cursor:
                yield decrypt(name, doc) if decrypt else doc
    finally:
        mc.close()
    done()


def count(cfg: Config, name: str, filter_doc: dict[str, Any] | None) -> int:
    check_query(Encryptor.from_config(cfg), name, filter_doc)
    with session(cfg) as db:
        existing(db, name)
        with translated(filter_doc):
            return int(db[name].count_documents(filter_doc or {}))


# ---- update, delete ----------------------------------------------------------------------------

@dataclass
class WriteResult:
    collection: str
    matched: int = 0
    modified: int = 0
    deleted: int = 0
    upserted_id: Any = None
    dry_run: bool = False

    def as_row(self, kind: str) -> dict[str, Any]:
        row: dict[str, Any] = {"collection": self.collection, "matched": self.matched}
        if kind == "update":
            row["modified"] = self.modified
            row["upserted_id"] = self.upserted_id
        else:
            row["deleted"] = self.deleted
        row["dry_run"] = self.dry_run
        return row


def guard_unfiltered(filter_doc: dict[str, Any] | None, all_docs: bool, action: str, name: str) -> dict[str, Any]:
    if not filter_doc and not all_docs:
        raise ConflictError(f"refusing to {action} every document of {name!r} without --filter",
                            hint="pass --all to mean it")
    return filter_doc or {}


def update(cfg: Config, name: str, filter_doc: dict[str, Any] | None, update_doc: dict[str, Any], *,
           all_docs: bool = False, upsert: bool = False, one: bool = False, dry_run: bool = False) -> WriteResult:
    """Update with operators. With a declared schema, each post-update document is computed
    client-side and validated first; any violation refuses the whole update (nothing written)."""
    filt = guard_unfiltered(filter_doc, all_docs, "update", name)
    enc = Encryptor.from_config(cfg)
    check_query(enc, name, filt)
    stored_update = update_sim.encrypt_update(enc, name, update_doc) if enc is not None else update_doc
    problem = schema_checker(cfg, name)
    result = WriteResult(collection=name, dry_run=dry_run)
    with session(cfg) as db:
        if upsert:
            check_name(name)
        else:
            existing(db, name)
        coll = db[name]
        ids: list[Any] | None = None
        if problem is not None:
            ids = _validated_ids(coll, name, filt, update_doc, problem, enc, one=one, upsert=upsert)
        if dry_run:
            result.matched = len(ids) if ids is not None else (
                min(1, coll.count_documents(filt, limit=1)) if one else coll.count_documents(filt))
            return result
        with translated(stored_update):
            if ids is not None and ids:
                for start in range(0, len(ids), ID_CHUNK):
                    chunk = {"$and": [filt, {"_id": {"$in": ids[start:start + ID_CHUNK]}}]}
                    res = coll.update_many(chunk, stored_update)
                    result.matched += res.matched_count
                    result.modified += res.modified_count
            else:
                res = (coll.update_one if one else coll.update_many)(filt, stored_update, upsert=upsert)
                result.matched, result.modified = res.matched_count, res.modified_count
                result.upserted_id = res.upserted_id
    if result.modified or result.upserted_id is not None:
        note_write(cfg, name)
    return result


def _validated_ids(coll: Any, name: str, filt: dict[str, Any], update_doc: dict[str, Any],
                   problem: Problem, enc: Encryptor | None, *, one: bool, upsert: bool) -> list[Any]:
    ids: list[Any] = []
    with translated(filt):
        cursor = coll.find(filt, limit=1 if one else 0, sort=[("_id", 1)], batch_size=1000)
        for doc in cursor:
            plain = enc.decrypt_doc(name, doc) if enc is not None else doc
            after = update_sim.apply(plain, update_doc)
            found = problem(after)
            if found:
                raise InvalidInputError(f"the update would make document _id={_id_text(doc.get('_id'))} violate "
                                        f"the {name} schema: {found}; nothing was changed")
            ids.append(doc["_id"])
    if not ids and upsert:
        after = update_sim.apply(update_sim.upsert_base(filt), update_doc, inserting=True)
        found = problem(after)
        if found:
            raise InvalidInputError(f"the upserted document would violate the {name} schema: {found}; "
                                    "nothing was changed")
    return ids


def _id_text(value: Any) -> str:
    return to_json(value, extended=True) if not isinstance(value, str | int) else repr(value)


def delete(cfg: Config, name: str, filter_doc: dict[str, Any] | None, *, all_docs: bool = False,
           one: bool = False, dry_run: bool = False) -> WriteResult:
    filt = guard_unfiltered(filter_doc, all_docs, "delete", name)
    check_query(Encryptor.from_config(cfg), name, filt)
    result = WriteResult(collection=name, dry_run=dry_run)
    with session(cfg) as db:
        existing(db, name)
        coll = db[name]
        with translated(filt):
            if dry_run:
                result.matched = coll.count_documents(filt, limit=1) if one else coll.count_documents(filt)
                return result
            res = (coll.delete_one if one else coll.delete_many)(filt)
    result.matched = result.deleted = res.deleted_count
    if result.deleted:
        note_write(cfg, name)
    return result

