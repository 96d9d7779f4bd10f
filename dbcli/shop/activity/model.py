"""The activity event model: the collections' names, checks of event fields, ids and documents.

Three collections (``schema/mongo`` of the shop): ``user_activities`` (one document per event,
unique ``event_id``), ``user_stats`` (counters per user) and ``activity_buckets`` (up to
``activity.bucket_size`` compact events per user, hour and seq); ``activity_journal`` is dbcli's
own bookkeeping of batches in flight (see ``journal``). Everything here is plain data: the other
activity modules, and the seed, build on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import bson

from dbcli.config.redact import redact_text
from dbcli.errors import ConflictError, DbcliError, InvalidInputError

EVENTS, STATS, BUCKETS = "user_activities", "user_stats", "activity_buckets"
COLLECTIONS = (EVENTS, STATS, BUCKETS)
# dbcli's own bookkeeping: one small document per batch in flight (see journal)
JOURNAL = "activity_journal"
DEFAULT_BATCH = 5000  # events per batch: fewer, larger batches mean fewer bucket and counter updates
# on servers with indexed updates (FerretDB 2.x, MongoDB): 100k events 2,520/s at 5000, 3,550/s at 20,000
# (bench_activity, quiet machine); FerretDB 1.x keeps 5000, its journal entries hold the batch's plan
LARGE_BATCH = 20_000
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# fields dbcli counts and groups by; encrypting them would make the counters meaningless
PLAIN_FIELDS = {"event_id", "user_id", "type", "timestamp", "day", "hour"}

# what an event in user_activities must hold for dbcli to count and bucket it; documents other
# tools write there without them are skipped (and counted as skipped), never a crash
NEEDED_FIELDS = ("event_id", "user_id", "type", "timestamp", "hour")
# the same test as a query: the user_id is matched by the caller
USABLE_QUERY = {"event_id": {"$type": "string"}, "type": {"$type": "string"}, "timestamp": {"$type": "date"},
                "hour": {"$type": "string"}}

Ref = dict[str, str]  # the extended reference {name, tier}
# stands for "." in user_stats.counts keys (FULLWIDTH FULL STOP, as dbcli seed writes them)
DOT = "\uff0e"


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


def usable(doc: dict[str, Any]) -> bool:
    """Whether a stored event has the fields dbcli counts and buckets by (see NEEDED_FIELDS)."""
    uid = doc.get("user_id")
    return (isinstance(doc.get("event_id"), str) and isinstance(uid, int) and not isinstance(uid, bool)
            and isinstance(doc.get("type"), str) and isinstance(doc.get("timestamp"), dt.datetime)
            and isinstance(doc.get("hour"), str))


def skipped_note(n: int, user_id: int | None = None) -> str:
    """How ``rebuild-stats`` and ``stats`` say that events were left out."""
    if user_id is None:
        return f"skipped {n} events without the fields dbcli needs ({', '.join(NEEDED_FIELDS)})"
    verb = "lacks" if n == 1 else "lack"
    return (f"{n} event{'' if n == 1 else 's'} of user {user_id} in {EVENTS} {verb} fields dbcli needs "
            f"({', '.join(NEEDED_FIELDS)}): not counted")


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


def bucket_id(user_id: int, hour: str, seq: int) -> dict[str, Any]:
    """The ``_id`` of a bucket, derived from its key: the key's uniqueness is the ``_id``'s.

    A unique compound index would say the same, but DocumentDB (FerretDB 2.x) checks one in time
    proportional to the collection on every insert and update, while ``_id`` is its primary key
    (docs/activity.md, "Buckets"). A sub-document, not a string: lookups by it were the faster
    of the two there (measured). Its fields are always built in this order (equality is by order).
    """
    return {"u": user_id, "h": hour, "s": seq}


def id_key(value: Any) -> Any:
    """A hashable form of an ``_id`` (a bucket's is a sub-document), for sets of stored ``_id``s."""
    return bson.encode(value) if isinstance(value, Mapping) else value


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a bucket keeps of an event."""
    return {"event_id": doc["event_id"], "type": doc["type"], "ts": doc["timestamp"]}


def _short(value: Any) -> str:
    return repr(value)[:60]


def write_error(collection: str, error: dict[str, Any]) -> DbcliError:
    """One write error of a bulk write as one line with the right exit code."""
    text = redact_text(str(error.get("errmsg", "write failed"))).splitlines()[0][:300]
    if error.get("code") == 121:
        return InvalidInputError(f"document failed validation in {collection}: {text}")
    if error.get("code") == 11000:
        return ConflictError(f"duplicate key in {collection}: {text}")
    return DbcliError(f"MongoDB error in {collection}: {text}")
