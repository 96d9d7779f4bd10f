"""Counters and buckets recomputed from the events: crash recovery and ``activity rebuild-stats``.

``repair`` is what crash recovery (``recover``) runs for the users of an unfinished batch: counters
recomputed from the events (absolute values, so running it twice changes nothing) and the events
missing from the buckets appended. ``rebuild`` is ``activity rebuild-stats``: the same counters,
and buckets rewritten wherever they disagree with the events (missing, extra or duplicated entries).
Events other tools wrote without the fields dbcli needs (``model.usable``) are left out of both,
and counted as skipped.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, ReplaceOne

from dbcli.config.model import Config
from dbcli.errors import DbcliError
from dbcli.mongo import connection as mongo
from dbcli.shop.activity import rewrite
from dbcli.shop.activity.buckets import BucketWriter
from dbcli.shop.activity.journal import IN_FLIGHT, is_stale, journal_entry
from dbcli.shop.activity.model import (
    BUCKETS,
    EVENTS,
    JOURNAL,
    STATS,
    bucket_id,
    check_user_id,
    id_key,
    summary,
    type_key,
    usable,
)
from dbcli.shop.activity.session import Session, note_write, open_session, validate

CHUNK_EVENTS = 200_000  # events held in memory at once while recomputing
EVENT_FIELDS = {"_id": 1, "event_id": 1, "user_id": 1, "type": 1, "timestamp": 1, "hour": 1, "user": 1}


def expected_stats(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """user_stats documents (without _id) as the events say."""
    out: dict[int, dict[str, Any]] = {}
    for e in sorted(events, key=_insertion_order):  # the newest reference wins
        st = out.get(e["user_id"])
        if st is None:
            st = out[e["user_id"]] = {"user_id": e["user_id"], "activity_count": 0, "counts": defaultdict(int),
                                      "first_activity": e["timestamp"], "last_activity": e["timestamp"]}
        st["activity_count"] += 1
        st["counts"][type_key(e["type"])] += 1
        st["first_activity"] = min(st["first_activity"], e["timestamp"])
        st["last_activity"] = max(st["last_activity"], e["timestamp"])
        if e.get("user") is not None:
            st["user"] = e["user"]
    for st in out.values():
        st["counts"] = dict(st["counts"])
    return out


def _insertion_order(e: dict[str, Any]) -> tuple[int, Any]:
    # dbcli's events have ObjectIds (in insertion order); another tool's _id may be anything
    return (0, e["_id"]) if isinstance(e["_id"], ObjectId) else (1, str(e["_id"]))


def usable_events(session: Session, users: list[int]) -> tuple[list[dict[str, Any]], int]:
    """The events of ``users`` dbcli can count, and how many others (foreign documents) were skipped."""
    events, skipped = [], 0
    for e in session.db[EVENTS].find({"user_id": {"$in": users}}, EVENT_FIELDS):
        if usable(e):
            events.append(e)
        else:
            skipped += 1
    return events, skipped


def expected_buckets(events: list[dict[str, Any]], cap: int) -> dict[tuple[int, str], list[list[dict[str, Any]]]]:
    """Per (user_id, hour): the event summaries in time order, cut into buckets of ``cap``."""
    per_pair: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: (e["timestamp"], e["event_id"])):
        per_pair[(e["user_id"], e["hour"])].append(summary(e))
    return {p: [s[i:i + cap] for i in range(0, len(s), cap)] for p, s in per_pair.items()}


def repair(session: Session, users: list[int] | None, hours: list[str] | None = None) -> int:
    """Counters recomputed and missing bucket entries added for ``users`` (None: everyone).

    ``hours``: only the buckets of those hours can lack entries (the hours of a dead batch, from
    its journal entry): only they are read, not every bucket of the users.
    """
    def one(chunk: list[int]) -> int:
        events, _skipped = usable_events(session, chunk)
        _write_stats(session, chunk, expected_stats(events))
        present: set[str] = set()
        where: dict[str, Any] = {"user_id": {"$in": chunk}}
        if hours is not None:
            where["hour"] = {"$in": hours}
            wanted = set(hours)
            events = [e for e in events if e["hour"] in wanted]
        for b in session.db[BUCKETS].find(where, {"events.event_id": 1}):
            present.update(e["event_id"] for e in b.get("events") or [])
        missing = [e for e in events if e["event_id"] not in present]
        if session.rewrite:
            stored: set[Any] = set()
            rewrite.write(session, BUCKETS, BucketWriter(session).plan(missing, stored), stored)
        else:
            BucketWriter(session).add(missing)
        return len(chunk)

    return sum(one(chunk) for chunk in _user_chunks(session, users))


def recover(session: Session) -> int:
    """Finish the batches whose writer died; returns how many users were recovered."""
    with mongo.errors_translated():
        if not session.rewrite:
            return recover_entries(session, _stale(session))
        recovered = 0

        def finish(entry: dict[str, Any]) -> None:
            nonlocal recovered
            recovered += recover_entries(session, [entry])

        with rewrite.held(session, [], finish):
            recovered += recover_entries(session, _stale(session))  # left by another dbcli version
            rewrite.release(session)
        return recovered


def _stale(session: Session) -> list[dict[str, Any]]:
    return [e for e in session.db[JOURNAL].find({"_id": {"$ne": rewrite.LOCK}}) if is_stale(e)]


def recover_entries(session: Session, entries: list[dict[str, Any]]) -> int:
    """Finish the batches of dead journal entries and remove them; returns how many users they touched.

    An entry with a recorded plan (FerretDB 1.x) is finished by writing the plan again, and only
    the users of its unrecorded parts are recomputed; any other entry's users are recomputed from
    the events.
    """
    if not entries:
        return 0
    every = any(e.get("all") for e in entries)
    users: set[int] = set()
    # the hours whose buckets the dead batches touched; None once one did not record them
    hours: set[str] | None = set()
    replayed = 0
    for e in entries:
        plan = e.get("plan")
        if plan is None:
            users.update(u for u in e.get("users") or [] if _is_user_id(u))
            recorded = e.get("hours")
            if hours is not None and isinstance(recorded, list) and all(isinstance(h, str) for h in recorded):
                hours.update(recorded)
            else:
                hours = None
            continue
        try:
            rewrite.replay(session, plan)
            replayed += len(e.get("users") or [])
        except DbcliError:  # another tool wrote in between (a duplicate key): recompute instead
            users.update(u for u in e.get("users") or [] if _is_user_id(u))
            hours = None
        if e.get("rest"):
            users.update(u for u in e["rest"] if _is_user_id(u))
            hours = None
    repaired = 0
    if every or users:
        repaired = repair(session, None if every else sorted(users), None if every or hours is None else sorted(hours))
    session.db[JOURNAL].delete_many({"_id": {"$in": [e["_id"] for e in entries]}})
    return replayed + repaired


def rebuild(cfg: Config, user_id: Any = None) -> dict[str, int]:
    """``activity rebuild-stats``: counters and buckets exactly as the events say."""
    users = None if user_id is None else [check_user_id(user_id)]
    totals = {"users": 0, "events": 0, "skipped": 0, "stats_written": 0, "stats_removed": 0,
              "buckets_written": 0, "buckets_removed": 0}
    with open_session(cfg) as s, mongo.errors_translated():
        if s.rewrite:
            # the writer lock held throughout: a rebuild cut short is finished by the next writer
            with rewrite.held(s, users, lambda e: recover_entries(s, [e])):
                recover_entries(s, _stale(s))
                _rebuild_chunks(s, users, totals)
                rewrite.release(s)
            note_write(cfg)
            return totals
        recover(s)
        # a rebuild cut short is finished by the next writer's recovery (an additive repair)
        entry = journal_entry(f"rebuild-{uuid.uuid4().hex[:12]}", users)
        IN_FLIGHT.add(entry["_id"])
        try:
            s.db[JOURNAL].insert_one(entry)
            _rebuild_chunks(s, users, totals)
            s.db[JOURNAL].delete_one({"_id": entry["_id"]})
        finally:
            IN_FLIGHT.discard(entry["_id"])
    note_write(cfg)
    return totals


def _rebuild_chunks(s: Session, users: list[int] | None, totals: dict[str, int]) -> None:
    odd: list[int] = []
    for chunk in _user_chunks(s, users, odd):
        events, skipped = usable_events(s, chunk)
        totals["skipped"] += skipped
        written, removed = _write_stats(s, chunk, expected_stats(events))
        b_written, b_removed = _write_buckets(s, chunk, expected_buckets(events, s.cap))
        totals["users"] += len({e["user_id"] for e in events})
        totals["events"] += len(events)
        totals["stats_written"] += written
        totals["stats_removed"] += removed
        totals["buckets_written"] += b_written
        totals["buckets_removed"] += b_removed
    totals["skipped"] += sum(odd)


def _user_chunks(session: Session, users: list[int] | None, odd: list[int] | None = None) -> Iterator[list[int]]:
    """Users in groups of about CHUNK_EVENTS events; with None, every user found in any collection.

    Events whose user_id is no integer belong to no chunk: their count is appended to ``odd``.
    """
    db = session.db
    if users is not None:
        yield from (users[i:i + 1000] for i in range(0, len(users), 1000))
        return
    sizes: dict[int, int] = {}
    others = 0  # events whose user_id is missing or no integer (another tool's documents)
    for d in db[EVENTS].aggregate([{"$group": {"_id": "$user_id", "n": {"$sum": 1}}}]):
        if _is_user_id(d["_id"]):
            sizes[d["_id"]] = d["n"]
        else:
            others += d["n"]
    for name in (STATS, BUCKETS):  # counters or buckets of users without events are removed
        for uid in db[name].distinct("user_id"):
            if _is_user_id(uid):
                sizes.setdefault(uid, 0)
    if odd is not None:
        odd.append(others)
    chunk: list[int] = []
    held = 0
    for uid in sorted(sizes):
        chunk.append(uid)
        held += sizes[uid]
        if held >= CHUNK_EVENTS or len(chunk) >= 5000:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _is_user_id(value: Any) -> bool:
    # as it comes from the database: another tool may have written anything there
    return isinstance(value, int) and not isinstance(value, bool)


def _write_stats(session: Session, users: list[int], wanted: dict[int, dict[str, Any]]) -> tuple[int, int]:
    """Replace each user's counters by ``wanted`` (keeping its _id); remove those of users without events."""
    coll = session.db[STATS]
    existing = {d["user_id"]: d["_id"] for d in coll.find({"user_id": {"$in": users}}, {"user_id": 1})}
    if session.rewrite:  # whole documents (see rewrite): one delete and one insert, not one update per user
        gone = [existing[u] for u in users if u in existing and u not in wanted]
        if gone:
            coll.delete_many({"_id": {"$in": gone}})
        docs = []
        for uid in users:
            if uid in wanted:
                validate(session, STATS, wanted[uid], f"user_stats of user {uid}")
                docs.append({"_id": existing.get(uid) or ObjectId(), **wanted[uid]})
        rewrite.write(session, STATS, docs, {id_key(v) for v in existing.values()})
        return len(docs), len(gone)
    ops: list[Any] = []
    for uid in users:
        doc = wanted.get(uid)
        if doc is None:
            if uid in existing:
                ops.append(DeleteOne({"_id": existing[uid]}))
            continue
        validate(session, STATS, doc, f"user_stats of user {uid}")
        ops.append(ReplaceOne({"_id": existing[uid]}, doc) if uid in existing else InsertOne(doc))
    session.bulk_write(coll, ops)
    removed = sum(1 for op in ops if isinstance(op, DeleteOne))
    return len(ops) - removed, removed


def _write_buckets(session: Session, users: list[int],
                   wanted: dict[tuple[int, str], list[list[dict[str, Any]]]]) -> tuple[int, int]:
    """Rewrite the buckets of every (user, hour) whose buckets disagree with the events."""
    coll = session.db[BUCKETS]
    have: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for b in coll.find({"user_id": {"$in": users}}, {"user_id": 1, "hour": 1, "seq": 1, "count": 1,
                                                     "events.event_id": 1}):
        have[(b["user_id"], b["hour"])].append(b)
    remove: list[Any] = []
    insert: list[dict[str, Any]] = []
    for pair in set(have) | set(wanted):
        chunks = wanted.get(pair, [])
        if _bucket_layout_ok(have.get(pair, []), chunks, session.cap):
            continue
        remove.extend(b["_id"] for b in have.get(pair, []))
        for seq, events in enumerate(chunks):
            doc = {"user_id": pair[0], "hour": pair[1], "seq": seq, "count": len(events), "events": events}
            validate(session, BUCKETS, doc, f"bucket {pair[0]}/{pair[1]}/{seq}")
            insert.append({"_id": bucket_id(pair[0], pair[1], seq), **doc})
    if remove:
        coll.delete_many({"_id": {"$in": remove}})
    if insert:
        coll.insert_many(insert, ordered=False)
    return len(insert), len(remove)


def _bucket_layout_ok(have: list[dict[str, Any]], wanted: list[list[dict[str, Any]]], cap: int) -> bool:
    """Same events, each once, counts that match, seq 0..k-1 with every bucket but the last full,
    and each ``_id`` derived from the bucket's key (so a rebuild also moves buckets written before
    ``model.bucket_id`` to it)."""
    ids = [e["event_id"] for b in have for e in b.get("events") or []]
    wanted_ids = sorted(e["event_id"] for chunk in wanted for e in chunk)
    if sorted(ids) != wanted_ids or len(have) != math.ceil(len(wanted_ids) / cap):
        return False
    ordered = sorted(have, key=lambda b: b["seq"])
    if [b["seq"] for b in ordered] != list(range(len(ordered))):
        return False
    if any(b["count"] != len(b.get("events") or []) for b in ordered):
        return False
    if any(b["_id"] != bucket_id(b["user_id"], b["hour"], b["seq"]) for b in ordered):
        return False
    return all(b["count"] == cap for b in ordered[:-1])
