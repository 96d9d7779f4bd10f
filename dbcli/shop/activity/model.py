"""Activity events in MongoDB: the event model, sessions, ``record`` and the demo.

Three collections (``schemas/mongo``): ``user_activities`` (one document per event, unique
``event_id``), ``user_stats`` (counters per user) and ``activity_buckets`` (up to
``activity.bucket_size`` compact events per user, hour and seq).

Exactly-once without transactions (FerretDB has none): every batch is announced in the small
``activity_journal`` collection before anything is written and removed after its counters and
buckets are written. The events' unique index makes re-inserting harmless, and only events this
batch actually inserted are counted, so a duplicate can never be counted twice. A batch whose
process died leaves its journal entry behind; the next writer sees it and recomputes the counters
of that batch's users from their events (absolute values, idempotent) and adds their missing
events to the buckets (``activity_writer``). See the README, "Activity".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbcli.config.load import Config
from dbcli.errors import ConfigError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from dbcli.output import Output

EVENTS, STATS, BUCKETS = "user_activities", "user_stats", "activity_buckets"
COLLECTIONS = (EVENTS, STATS, BUCKETS)
# dbcli's own bookkeeping: one small document per batch in flight (see the module docstring)
JOURNAL = "activity_journal"
MAX_BUCKET = 200  # the activity_buckets JSON Schema allows at most 200 events per bucket
DEFAULT_BATCH = 5000  # events per batch: fewer, larger batches mean fewer bucket and counter updates
# a journal entry of another host, or of a process we cannot check, counts as crashed after this
STALE_AFTER = dt.timedelta(minutes=10)
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# fields dbcli counts and groups by; encrypting them would make the counters meaningless
PLAIN_FIELDS = {"event_id", "user_id", "type", "timestamp", "day", "hour"}
CRASH_ENV = "DBCLI_TEST_CRASH_AFTER"  # test hook, see Writer._crash_point

Ref = dict[str, str]  # the extended reference {name, tier}
# stands for "." in user_stats.counts keys (FULLWIDTH FULL STOP, as dbcli seed writes them)
DOT = "\uff0e"


# ---- the event model ---------------------------------------------------------------------------

def type_key(kind: str) -> str:
    """``counts`` key for an activity type: a '.' would be read as a path, so it is encoded."""
    return kind.replace(".", DOT)


def type_from_key(key: str) -> str:
    return key.replace(DOT, ".")


def check_type(value: Any) -> str:
    if not isinstance(value, str) or not TYPE_PATTERN.match(value):
        raise InvalidInputError(f"type must match {TYPE_PATTERN.pattern}, got {_short(value)}")
    return value


def check_user_id(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInputError(f"user_id must be a positive integer, got {_short(value)}")
    return value


def parse_timestamp(value: Any) -> dt.datetime:
    """ISO-8601 text (no zone means UTC) or seconds since the epoch, in UTC at millisecond precision."""
    try:
        if isinstance(value, dt.datetime):
            ts = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            ts = dt.datetime.fromtimestamp(value, dt.UTC)
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                ts = dt.datetime.fromtimestamp(float(text), dt.UTC)
            else:
                ts = dt.datetime.fromisoformat(text)
                ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise InvalidInputError(f"timestamp must be ISO-8601 or epoch seconds, got {_short(value)}") from None
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)  # what a BSON date keeps


def check_event_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise InvalidInputError(f"event_id must be a string of 1 to 128 characters, got {_short(value)}")
    return value


def derive_event_id(user_id: int, kind: str, ts: dt.datetime, data: dict[str, Any] | None) -> str:
    """SHA-256 of the event's canonical JSON: the same event always gets the same id.

    The canonical form is ``json.dumps({"user_id", "type", "timestamp", "data"}, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` with the timestamp as ISO-8601 UTC in
    milliseconds. It is assembled by hand (same bytes) because this runs for every event; the
    type needs no escaping (its pattern allows none of the characters JSON escapes).
    """
    body = "null" if data is None else json.dumps(data, sort_keys=True, separators=(",", ":"),
                                                  ensure_ascii=False, default=str)
    canonical = f'{{"data":{body},"timestamp":"{iso_ms(ts)}","type":"{kind}","user_id":{user_id}}}'
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def iso_ms(ts: dt.datetime) -> str:
    if ts.utcoffset():
        ts = ts.astimezone(dt.UTC)
    return (f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}."
            f"{ts.microsecond // 1000:03d}Z")


def day_key(ts: dt.datetime) -> str:
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}"


def hour_key(ts: dt.datetime) -> str:
    return f"{day_key(ts)}T{ts.hour:02d}"


def event_doc(event_id: str, user_id: int, kind: str, ts: dt.datetime, data: dict[str, Any] | None,
              user: Ref | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_id": event_id, "user_id": user_id, "type": kind, "timestamp": ts,
                           "day": day_key(ts), "hour": hour_key(ts)}
    if data is not None:
        doc["data"] = data
    if user is not None:
        doc["user"] = user
    return doc


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a bucket keeps of an event."""
    return {"event_id": doc["event_id"], "type": doc["type"], "ts": doc["timestamp"]}


def bucket_size(cfg: Config) -> int:
    size = cfg.get("activity.bucket_size")
    size = MAX_BUCKET if size is None else size
    if isinstance(size, str) and size.strip().isdigit():  # from ${VAR} interpolation
        size = int(size)
    if not isinstance(size, int) or not 1 <= size <= MAX_BUCKET:
        raise ConfigError(f"activity.bucket_size must be between 1 and {MAX_BUCKET}, got {size!r}")
    return size


def _short(value: Any) -> str:
    return repr(value)[:60]


# ---- sessions ----------------------------------------------------------------------------------

@dataclass
class Session:
    cfg: Config
    client: Any
    db: Any
    checkers: dict[str, Callable[[dict[str, Any]], str | None]]
    encryptor: Any
    cap: int
    # most write statements per update command: FerretDB v1.24 never answers an update command
    # holding 100 or more (measured), so against it the writes go in groups of 50
    update_chunk: int = 100_000
    # the bucket writes' overflow guard (count <= cap - k in the filter); see BucketWriter
    guard_buckets: bool = True

    def bulk_write(self, coll: Any, ops: list[Any]) -> int:
        """Unordered bulk write in groups of ``update_chunk``; returns the matched count."""
        matched = 0
        for i in range(0, len(ops), self.update_chunk):
            matched += coll.bulk_write(ops[i:i + self.update_chunk], ordered=False).matched_count
        return matched

    def close(self) -> None:
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
    from pymongo import ReadPreference

    from dbcli.mongo import connection as mongo
    from dbcli.schema.files import collection_specs

    if for_write and str(cfg.mongo.write_concern) == "0":
        raise ConfigError("activity writes need acknowledged writes: mongo.write_concern 0 cannot tell "
                          "a duplicate event from a new one", hint="use 1 or majority")
    cap = bucket_size(cfg)
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
            ferret = for_write and mongo.is_ferretdb(client)
        enc = _encryptor(cfg) if for_write else None
    except BaseException:
        client.close()
        raise
    return Session(cfg, client, db, {name: _checker(spec) for name, spec in specs.items()}, enc, cap,
                   update_chunk=50 if ferret else 100_000, guard_buckets=not ferret)


def _check_specs(specs: dict[str, Any]) -> None:
    """Exactly-once rests on the unique event_id index: refuse a schema directory without it."""
    missing = [name for name in COLLECTIONS if name not in specs]
    if missing:
        raise ConfigError(f"the schema directory declares no {missing[0]} collection", hint="see schemas/mongo")
    if not any(ix.unique and [k for k, _ in ix.keys] == ["event_id"] for ix in specs[EVENTS].indexes):
        raise ConfigError(f"the {EVENTS} collection spec declares no unique index on event_id",
                          hint="exactly-once ingest needs it; see schemas/mongo/user_activities.json")


def _ensure_schema(db: Any, specs: dict[str, Any]) -> None:
    from dbcli.mongo import validation as mongo_schema

    # status() is a few reads; apply() only when something is missing (it also tries validators)
    if any(row["state"] != "present" for row in mongo_schema.status(db, specs)):
        mongo_schema.apply(db, specs)


def _checker(spec: Any) -> Callable[[dict[str, Any]], str | None]:
    from dbcli.mongo.fastschema import compile_schema

    quick = compile_schema(spec.json_schema) if spec.json_schema else None
    if quick is None:
        return spec.problem  # type: ignore[no-any-return]

    def problem(doc: dict[str, Any]) -> str | None:
        # the compiled predicate only says "certainly valid"; jsonschema stays the authority
        return None if quick(doc) else spec.problem(doc)
    return problem


def _encryptor(cfg: Config) -> Any:
    if not (cfg.get("encryption.fields") or {}).get(EVENTS):
        return None
    from dbcli.encryption.fields import Encryptor

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


# ---- PostgreSQL: the users an event may name ----------------------------------------------------

def user_refs(cfg: Config, user_ids: Iterable[int]) -> dict[int, Ref]:
    """{user_id: {name, tier}} for the ids that exist in PostgreSQL ``users`` (one query)."""
    from dbcli.postgres import connection as postgres

    ids = sorted(set(user_ids))
    if not ids:
        return {}
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        try:
            rows = conn.execute("SELECT user_id, name, tier FROM users WHERE user_id = ANY(%s)", (ids,)).fetchall()
        except Exception as e:
            if getattr(e, "sqlstate", None) == "42P01":
                raise NotFoundError("table users does not exist", hint="run dbcli schema apply") from None
            raise
    return {int(uid): {"name": name, "tier": tier} for uid, name, tier in rows}


def note_write(cfg: Config) -> None:
    """Tell the report cache that the activity collections changed."""
    try:
        from dbcli.cache.store import note_write as cache_note_write
    except ImportError:  # the cache module is optional
        return
    cache_note_write(cfg, [f"mongo:{name}" for name in COLLECTIONS])


# ---- record ------------------------------------------------------------------------------------

def record(cfg: Config, user_id: Any, kind: Any, *, data: Any = None, at: Any = None,
           event_id: str | None = None) -> dict[str, Any]:
    """Record one event; returns it with ``recorded`` false when it was already there."""
    uid = check_user_id(user_id)
    kind = check_type(kind)
    if data is not None and not isinstance(data, dict):
        raise InvalidInputError("data must be a JSON object")
    ts = parse_timestamp(at if at is not None else dt.datetime.now(dt.UTC))
    eid = check_event_id(event_id) if event_id is not None else derive_event_id(uid, kind, ts, data)
    ref = user_refs(cfg, [uid]).get(uid)
    if ref is None:
        raise NotFoundError(f"user {uid} not found in PostgreSQL users")
    with open_session(cfg) as session:
        doc = event_doc(eid, uid, kind, ts, data, ref)
        validate(session, EVENTS, doc, "event")
        if session.encryptor is not None:
            doc = session.encryptor.encrypt_doc(EVENTS, doc)
        from dbcli.shop.activity.writer import Writer

        result = Writer(session).write([doc])
    if result.inserted:
        note_write(cfg)
    return {"event_id": eid, "user_id": uid, "type": kind, "timestamp": ts, "recorded": bool(result.inserted)}


# ---- demo --------------------------------------------------------------------------------------

def demo_step(cfg: Config, out: Output) -> None:
    """Record a few events for seeded users and show their counters (skipped without MongoDB)."""
    from dbcli.shop.activity import stats as activity_stats

    if not cfg.mongo.configured:
        out.info("no MongoDB-wire server configured: activity recording skipped")
        return
    users = sorted(user_refs(cfg, range(1, 4)))
    if not users:
        out.info("no users in PostgreSQL (seed first): activity recording skipped")
        return
    base = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
    script = [("login", 0), ("page.view", 1), ("add_to_cart", 2), ("page.view", 3), ("logout", 9)]
    recorded = 0
    for uid in users:
        for kind, minute in script:
            at = (base + dt.timedelta(minutes=minute + uid)).isoformat()
            # fixed event ids: running the demo again records nothing twice
            result = record(cfg, uid, kind, at=at, event_id=f"demo-{uid}-{kind}-{minute}")
            recorded += result["recorded"]
    out.info(f"$ dbcli activity record --user {users[0]} --type page.view --at {base.isoformat()} ...  "
             f"({recorded} new events, {len(users) * len(script) - recorded} already recorded)")
    rows = [activity_stats.stats_row(activity_stats.user_stats(cfg, uid)) for uid in users]
    out.info(f"$ dbcli activity stats {users[0]}   (and the others)")
    out.rows(rows, ["user_id", "name", "tier", "activity_count", "first_activity", "last_activity", "counts"],
             title="Activity counters")
