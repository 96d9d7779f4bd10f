"""A connection to the activity collections: the schema in place, client-side validation, encryption."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReadPreference
from pymongo.errors import OperationFailure

from dbcli.cache.store import note_write as cache_note_write
from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConfigError, InvalidInputError
from dbcli.mongo import bulk
from dbcli.mongo import connection as mongo
from dbcli.mongo import validation as mongo_schema
from dbcli.mongo.json_schema import Problem, checker
from dbcli.schema.files import CollectionSpec, collection_specs
from dbcli.schema.mongo_collections import apply_concurrently
from dbcli.shop.activity import parallel
from dbcli.shop.activity.model import BUCKETS, COLLECTIONS, EVENTS, PLAIN_FIELDS

INDEX_NOT_FOUND = 27


@dataclass
class Session:
    cfg: Config
    client: Any
    db: Any
    checkers: dict[str, Problem]
    encryptor: Encryptor | None
    cap: int
    # most write statements per command (FerretDB 1.x hangs on 50 updates; see mongo.bulk)
    update_chunk: int = bulk.DEFAULT_STATEMENTS
    # the bucket writes' overflow guard (count <= cap - k in the filter); see BucketWriter
    guard_buckets: bool = True
    # FerretDB 1.x: counters and buckets rewritten whole (delete + insert) under the writer lock,
    # from a plan recorded in the journal, instead of one update per document (see rewrite)
    rewrite: bool = False
    # connections a batch's independent parts are written over at once (1 on FerretDB 1.x, whose
    # SQLite writers contend for one lock; see parallel)
    jobs: int = 1
    pool: ThreadPoolExecutor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.jobs > 1:
            self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="dbcli-activity-write")

    def bulk(self, coll: Any, ops: list[Any]) -> dict[str, Any]:
        """Unordered bulk write over ``jobs`` connections at once, in commands of at most
        ``update_chunk`` statements; the summed result (a BulkWriteError as ``bulk.bulk_write``'s)."""
        return bulk.bulk_write(coll, ops, parallel.part_size(len(ops), self.jobs, self.update_chunk), self.pool)

    def bulk_write(self, coll: Any, ops: list[Any]) -> int:
        """``bulk``, returning the matched count."""
        return int(self.bulk(coll, ops)["nMatched"])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # no part of a batch outlives its session
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(cfg: Config, *, for_write: bool = True) -> Session:
    """A connection; for writing, with the collections and indexes in place (created when missing).

    Reading sessions (``stats``, ``top``) follow ``mongo.read_preference``, so they may read a
    secondary and lag behind the latest writes.
    """
    if for_write and str(cfg.mongo.write_concern) == "0":
        raise ConfigError("activity writes need acknowledged writes: mongo.write_concern 0 cannot tell "
                          "a duplicate event from a new one", hint="use 1 or majority")
    cap = cfg.activity.bucket_size  # 1..200, checked when the config was loaded
    specs = {name: spec for name, spec in collection_specs(cfg).items() if name in COLLECTIONS}
    if for_write:
        _check_specs(specs)
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            if for_write:
                # the writer reads state it then modifies (bucket fill levels, counter documents):
                # that must be the primary's current state, whatever mongo.read_preference says
                db = db.with_options(read_preference=ReadPreference.PRIMARY)
                _ensure_schema(db, specs)
            ferret1 = for_write and bulk.is_ferretdb1(client)
        enc = _encryptor(cfg) if for_write else None
    except BaseException:
        client.close()
        raise
    return Session(cfg, client, db, {name: checker(spec) for name, spec in specs.items()}, enc, cap,
                   update_chunk=bulk.FERRETDB1_STATEMENTS if ferret1 else bulk.DEFAULT_STATEMENTS,
                   guard_buckets=not ferret1, rewrite=ferret1,
                   jobs=1 if ferret1 or not for_write else parallel.WRITE_JOBS)


def _check_specs(specs: dict[str, CollectionSpec]) -> None:
    """Exactly-once rests on the unique event_id index: refuse a schema directory without it."""
    missing = [name for name in COLLECTIONS if name not in specs]
    if missing:
        raise ConfigError(f"the schema directory declares no {missing[0]} collection", hint="see schemas/mongo")
    if not any(ix.unique and [k for k, _ in ix.keys] == ["event_id"] for ix in specs[EVENTS].indexes):
        raise ConfigError(f"the {EVENTS} collection spec declares no unique index on event_id",
                          hint="exactly-once ingest needs it; see schemas/mongo/user_activities.json")


def _ensure_schema(db: Any, specs: dict[str, CollectionSpec]) -> None:
    # status() is a few reads; apply() only when something is missing (it also tries validators)
    if any(row["state"] != "present" for row in mongo_schema.status(db, specs)):
        apply_concurrently(db, specs)  # another writer may be creating them at the same moment
    retire_legacy_index(db, specs[BUCKETS])


def retire_legacy_index(db: Any, spec: CollectionSpec) -> bool:
    """Drop the unique (user_id, hour, seq) index of ``activity_buckets`` that dbcli declared before
    buckets had ``model.bucket_id``s; returns whether it was there.

    ``schema apply`` never drops anything, so this is how an existing database migrates: the first
    activity writer drops it (docs/activity.md, "Buckets"). On FerretDB 2.x it made every bucket write
    cost time proportional to the collection; the ``_id`` now says the same. A schema directory that
    still declares it keeps it.
    """
    declared = {ix.name for ix in spec.indexes}
    for ix in db[BUCKETS].list_indexes():
        if (ix.get("unique") and list(ix["key"]) == ["user_id", "hour", "seq"]
                and ix["name"] not in declared):
            try:
                db[BUCKETS].drop_index(ix["name"])
            except OperationFailure as e:
                if e.code != INDEX_NOT_FOUND:  # another writer dropped it at the same moment
                    raise
            return True
    return False


def _encryptor(cfg: Config) -> Encryptor | None:
    if not cfg.encryption.fields.get(EVENTS):
        return None
    enc = Encryptor.from_config(cfg)
    if enc is None or not enc.fields_for(EVENTS):
        return None
    # data itself must stay an object (the schema says so); fields under it may be encrypted
    clash = sorted(f for f in enc.fields_for(EVENTS) if f.split(".")[0] in PLAIN_FIELDS | {"user"} or f == "data")
    if clash:
        raise ConfigError(f"encryption.fields.{EVENTS} cannot include {clash[0]}: activity counters "
                          "and reports need it in clear", hint="encrypt fields under data instead")
    return enc


def validate(session: Session, collection: str, doc: dict[str, Any], where: str) -> None:
    check = session.checkers.get(collection)
    problem = check(doc) if check else None
    if problem:
        raise InvalidInputError(f"{where} violates the {collection} schema: {problem}")


def note_write(cfg: Config) -> None:
    """Tell the report cache that the activity collections changed."""
    cache_note_write(cfg, [f"mongo:{name}" for name in COLLECTIONS])
