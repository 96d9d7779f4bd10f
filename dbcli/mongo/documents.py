"""CRUD on MongoDB collections: Extended JSON filters, operator updates, client-side schema checks.

Filters, projections, sorts and updates are MongoDB Extended JSON parsed by ``bson.json_util``
(never evaluated), so ObjectIds, dates and decimals survive the trip from the shell. Documents
written by dbcli are checked against the collection's declared JSON Schema before anything is
sent, on MongoDB and FerretDB alike (FerretDB enforces no validators). Fields named in
``encryption.fields`` are encrypted on the way in and decrypted on the way out.

Import and export live in ``dbcli.mongo.documents_io``; the client-side update evaluation used to
validate updates lives in ``dbcli.mongo.update_sim``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbcli.config.load import Config
from dbcli.errors import (
    ConflictError,
    DbcliError,
    InvalidInputError,
    NotFoundError,
)

if TYPE_CHECKING:
    from pymongo.database import Database

    from dbcli.encryption.fields import Encryptor
    from dbcli.output import Output
    from dbcli.schema.files import CollectionSpec

# operators that take a plain value at a path (the ones an encrypted field may receive)
ID_CHUNK = 1000


# ---- parsing user input ------------------------------------------------------------------------

def parse_json(text: str | None, option: str) -> Any:
    """Extended JSON from a command-line option; errors name the option."""
    if text is None:
        return None
    from bson import json_util
    from bson.errors import BSONError

    try:
        # tz-aware like the documents pymongo returns (mongo.client sets tz_aware), so the two compare
        return json_util.loads(text, json_options=_json_options())
    except (ValueError, TypeError, KeyError, OverflowError, BSONError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InvalidInputError(f"{option}: invalid JSON ({detail})") from None


def _json_options() -> Any:
    import datetime as dt

    from bson import json_util

    return json_util.DEFAULT_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=dt.UTC)


def parse_object(text: str | None, option: str) -> dict[str, Any] | None:
    value = parse_json(text, option)
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"{option}: expected a JSON object")
    return value


def parse_update(text: str, option: str = "--update") -> dict[str, Any]:
    """An update document: every top-level key an update operator (a replacement is refused)."""
    value = parse_json(text, option)
    if not isinstance(value, dict) or not value:
        raise InvalidInputError(f"{option}: expected a JSON object of update operators such as {{\"$set\": ...}}")
    plain = [k for k in value if not k.startswith("$")]
    if plain:
        raise InvalidInputError(f"{option}: use update operators (for example {{\"$set\": {{\"{plain[0]}\": ...}}}}),"
                                " not a replacement document")
    for op, arg in value.items():
        if not isinstance(arg, dict):
            raise InvalidInputError(f"{option}: {op} takes a JSON object of fields")
    return value


def parse_sort(text: str | None, option: str = "--sort") -> list[tuple[str, int]] | None:
    """``{"field": 1, "other": -1}`` as the key list pymongo expects."""
    value = parse_object(text, option)
    if value is None:
        return None
    keys: list[tuple[str, int]] = []
    for field_name, direction in value.items():
        if direction not in (1, -1) or isinstance(direction, bool):
            raise InvalidInputError(f"{option}: direction of {field_name!r} must be 1 or -1")
        keys.append((field_name, int(direction)))
    return keys


def parse_fields(text: str | None) -> list[str] | None:
    if text is None:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise InvalidInputError("--fields: name at least one field")
    for f in fields:
        if f.startswith("$") or ".." in f or f.endswith("."):
            raise InvalidInputError(f"--fields: invalid field name {f!r}")
    return fields


def check_name(name: str) -> str:
    """A collection name MongoDB and FerretDB both accept."""
    if not name or "\x00" in name or "$" in name or name.startswith(("system.", ".")) or len(name) > 200:
        raise InvalidInputError(f"invalid collection name {name!r}")
    return name


# ---- sessions and errors -----------------------------------------------------------------------

@contextmanager
def session(cfg: Config) -> Iterator[Database[dict[str, Any]]]:
    """The configured database; driver errors come out as dbcli errors; the client is closed."""
    from dbcli.mongo import connection as mongo

    mc = mongo.client(cfg)
    try:
        with translated():
            yield mc[cfg.mongo.database]
    finally:
        mc.close()


@contextmanager
def translated(payload: Any = None) -> Iterator[None]:
    """mongo.translate, plus: server rejections of a query are invalid input (exit 5)."""
    from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

    try:
        yield
    except PyMongoError as e:
        if isinstance(e, AutoReconnect) and payload is not None and contains_decimal128(payload):
            # FerretDB 1.x drops the connection on a Decimal128 instead of answering
            raise InvalidInputError("the server closed the connection on a Decimal128 value "
                                    "(FerretDB does not support $numberDecimal)") from None
        from dbcli.mongo import connection as mongo

        err = mongo.translate(e)
        if isinstance(e, OperationFailure) and e.code not in (13, 18, 8000):
            if type(err) is DbcliError:
                err = InvalidInputError(err.message)
            errmsg = (e.details or {}).get("errmsg") if isinstance(e.details, dict) else None
            if errmsg and type(err) is InvalidInputError:
                # the server's own words, without pymongo's ", full error: {...}" dump
                from dbcli.config.load import redact_text

                err = InvalidInputError(redact_text(str(errmsg)).splitlines()[0][:300].rstrip("."))
        raise err from e


def contains_decimal128(value: Any) -> bool:
    from collections.abc import Mapping

    if isinstance(value, Mapping):  # dicts and RawBSONDocuments
        return any(contains_decimal128(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_decimal128(v) for v in value)
    return type(value).__name__ == "Decimal128"


def existing(db: Database[dict[str, Any]], name: str) -> str:
    """``name`` if the collection exists, else exit 5 naming the closest match."""
    check_name(name)
    names = db.list_collection_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        raise InvalidInputError(f"unknown collection {name!r}",
                                hint=f"did you mean {close[0]!r}?" if close else "dbcli collection list shows them")
    return name


def encryptor(cfg: Config) -> Encryptor | None:
    from dbcli.encryption.fields import Encryptor

    return Encryptor.from_config(cfg)


def check_query(enc: Encryptor | None, name: str, filter_doc: dict[str, Any] | None,
                sort: list[tuple[str, int]] | None = None) -> None:
    """Refuse filtering or sorting on an encrypted field (random nonces: ciphertexts never compare).

    ``null`` and ``$exists`` tests stay allowed: they do not look at the value.
    """
    fields = enc.fields_for(name) if enc is not None else set()
    if not fields:
        return
    for key, _ in sort or []:
        hit = _encrypted_path(fields, key)
        if hit:
            raise InvalidInputError(f"field {name}.{hit} is encrypted: it cannot be sorted on")
    _check_filter(fields, name, filter_doc or {})


def _check_filter(fields: set[str], name: str, filt: dict[str, Any]) -> None:
    for key, value in filt.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    _check_filter(fields, name, sub)
        elif not key.startswith("$"):
            hit = _encrypted_path(fields, key)
            harmless = value is None or (isinstance(value, dict) and set(value) <= {"$exists"})
            if hit and not harmless:
                raise InvalidInputError(f"field {name}.{hit} is encrypted: it cannot be filtered on")


def _encrypted_path(fields: set[str], path: str) -> str | None:
    for f in fields:
        if f == path or f.startswith(path + ".") or path.startswith(f + "."):
            return f
    return None


def note_write(cfg: Config, collection: str) -> None:
    """Tell the report cache that a collection changed (no-op until the cache module exists)."""
    try:
        from dbcli.cache.store import note_write as cache_note_write
    except ImportError:
        return
    cache_note_write(cfg, [f"mongo:{collection}"])


def schema_checker(cfg: Config, name: str) -> Callable[[dict[str, Any]], str | None] | None:
    """``doc -> problem or None`` for a collection with a declared JSON Schema, else None."""
    from dbcli.schema.files import validator_for

    spec = validator_for(cfg, name)
    if spec is None or not spec.json_schema:
        return None
    return fast_problem(spec)


def fast_problem(spec: CollectionSpec) -> Callable[[dict[str, Any]], str | None]:
    from dbcli.mongo.fastschema import compile_schema

    quick = compile_schema(spec.json_schema)
    if quick is None:
        return spec.problem

    def problem(doc: dict[str, Any]) -> str | None:
        return None if quick(doc) else spec.problem(doc)
    return problem


# ---- list, indexes -----------------------------------------------------------------------------

LIST_COLUMNS = ["collection", "documents", "indexes", "schema", "encrypted_fields"]
INDEX_COLUMNS = ["name", "keys", "unique", "declared"]


def list_collections(cfg: Config) -> list[dict[str, Any]]:
    from dbcli.schema.files import collection_specs

    specs = collection_specs(cfg)
    enc = encryptor(cfg)
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
    from dbcli.schema.files import validator_for

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
    enc = encryptor(cfg)
    if enc is not None and enc.fields_for(name):
        docs = [enc.encrypt_doc(name, d) for d in docs]
    return docs


def insert(cfg: Config, name: str, docs: list[dict[str, Any]], *, lines: list[int] | None = None
           ) -> list[dict[str, Any]]:
    """Insert documents (ordered: stops at the first server error); returns them with their _id.

    A collection that does not exist yet is created, as mongosh does. ``lines`` (input line
    numbers) make error messages name the line instead of the position.
    """
    from bson import ObjectId

    check_name(name)
    if not docs:
        raise InvalidInputError("no document to insert")
    for d in docs:
        d.setdefault("_id", ObjectId())  # the caller gets the ids even though encryption copies the dicts
    where = (lambda i: f"line {lines[i]}") if lines else None
    stored = prepare(cfg, name, docs, where=where)
    from pymongo.errors import BulkWriteError

    with session(cfg) as db, translated(stored):
        try:
            db[name].insert_many(stored, ordered=True)
        except BulkWriteError as e:
            done = int(e.details.get("nInserted", 0))
            if done:
                note_write(cfg, name)
            raise _write_error(e, lines, done) from None
    note_write(cfg, name)
    return docs


def _write_error(e: Any, lines: list[int] | None, done: int) -> DbcliError:
    """The first write error of an ordered insert, naming its document or line."""
    from dbcli.config.load import redact_text

    err = (e.details.get("writeErrors") or [{}])[0]
    at = int(err.get("index", done))
    label = f"line {lines[at]}" if lines and at < len(lines) else f"document {at + 1}"
    before = f" ({done} document(s) before it were inserted)" if done else " (nothing was inserted)"
    if err.get("code") == 11000:
        return ConflictError(f"{label}: duplicate key{before}")
    text = redact_text(str(err.get("errmsg", "rejected"))).splitlines()[0][:200]
    return InvalidInputError(f"{label}: rejected by the server: {text}{before}")


# ---- find, count -------------------------------------------------------------------------------

@dataclass
class Query:
    filter: dict[str, Any]
    projection: dict[str, Any] | None = None
    sort: list[tuple[str, int]] | None = None
    limit: int = 0
    skip: int = 0


def find(cfg: Config, name: str, query: Query, *, on_done: Callable[[Encryptor | None], None] | None = None
         ) -> Iterator[dict[str, Any]]:
    """The matching documents, decrypted, as a stream that closes its client at the end.

    The collection check and the first batch happen before this returns, so an unknown
    collection or a filter the server rejects fails before anything is printed.
    """
    from dbcli.mongo import connection as mongo

    if query.limit < 0 or query.skip < 0:
        raise InvalidInputError("--limit and --skip must not be negative")
    enc = encryptor(cfg)
    decrypt = enc.decrypt_doc if enc is not None and enc.fields_for(name) else None
    check_query(enc, name, query.filter, query.sort)
    mc = mongo.client(cfg)
    try:
        with translated(query.filter):
            existing(mc[cfg.mongo.database], name)
            cursor = mc[cfg.mongo.database][name].find(query.filter, query.projection, skip=query.skip,
                                                       limit=query.limit, sort=query.sort, batch_size=1000)
            first = next(cursor, None)
    except BaseException:
        mc.close()
        raise
    return _stream(mc, cursor, first, name, decrypt, lambda: on_done(enc) if on_done is not None else None)


def _stream(mc: Any, cursor: Any, first: dict[str, Any] | None, name: str,
            decrypt: Callable[[str, dict[str, Any]], dict[str, Any]] | None, done: Callable[[], Any]
            ) -> Iterator[dict[str, Any]]:
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
    check_query(encryptor(cfg), name, filter_doc)
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
    from dbcli.mongo import update_sim

    filt = guard_unfiltered(filter_doc, all_docs, "update", name)
    enc = encryptor(cfg)
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
                   problem: Callable[[dict[str, Any]], str | None], enc: Encryptor | None, *,
                   one: bool, upsert: bool) -> list[Any]:
    from dbcli.mongo import update_sim

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
    from dbcli.output import to_json

    return to_json(value, extended=True) if not isinstance(value, str | int) else repr(value)


def delete(cfg: Config, name: str, filter_doc: dict[str, Any] | None, *, all_docs: bool = False,
           one: bool = False, dry_run: bool = False) -> WriteResult:
    filt = guard_unfiltered(filter_doc, all_docs, "delete", name)
    check_query(encryptor(cfg), name, filt)
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


# ---- demo --------------------------------------------------------------------------------------

def demo_step(cfg: Config, out: Output) -> None:
    """Insert, find, update and drop a document in a scratch collection of the configured MongoDB."""
    import datetime as dt

    if not cfg.mongo.configured:
        out.info("no MongoDB configured: the collection step is skipped")
        return
    name = "dbcli_demo_notes"
    doc = {"title": "hello from dbcli", "tags": ["demo"], "created": dt.datetime.now(dt.UTC).replace(microsecond=0)}
    out.info(f"$ dbcli collection insert {name} --data '{{\"title\": \"hello from dbcli\", ...}}'")
    insert(cfg, name, [doc])
    out.info(f"$ dbcli collection update {name} --filter '{{\"title\": \"hello from dbcli\"}}' "
             "--update '{\"$push\": {\"tags\": \"updated\"}}'")
    update(cfg, name, {"title": "hello from dbcli"}, {"$push": {"tags": "updated"}})
    out.info(f"$ dbcli collection find {name}")
    out.rows(find(cfg, name, Query(filter={})), extended=True)
    with session(cfg) as db:
        db.drop_collection(name)
    out.info(f"(scratch collection {name} dropped)")
