"""The exactly-once batch writer for activity events: journal, events, buckets, counters, recovery.

Per batch: (1) a journal entry names the batch's users, (2) ``insert_many`` of the events, the
unique ``event_id`` index rejecting those already stored, (3) the inserted events' summaries are
appended to their buckets, (4) their users' counters get ``$inc``/``$min``/``$max``, (5) the journal
entry is removed. Duplicates are never counted: either the batch that inserted them finished (its
counters are in), or it died and left its journal entry, and ``recover`` recomputes those users.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbcli.errors import ConflictError, DbcliError, InvalidInputError
from dbcli.shop.activity.model import (
    BUCKETS,
    CRASH_ENV,
    EVENTS,
    JOURNAL,
    STALE_AFTER,
    STATS,
    Session,
    summary,
    type_key,
    validate,
)

# journal entries this process is writing right now (a library user may write from several threads)
IN_FLIGHT: set[str] = set()


# ---- the batch writer --------------------------------------------------------------------------

@dataclass
class BatchResult:
    inserted: int = 0
    duplicates: int = 0


class Writer:
    """Writes batches of complete event documents exactly once. One per command run."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.db = session.db
        self.run_id = uuid.uuid4().hex[:12]
        self.batches = 0
        self.buckets = BucketWriter(session)
        self._stat_ids: dict[int, Any] = {}  # user_id -> _id of its user_stats document
        self.recovered_users = recover(session)

    def write(self, docs: list[dict[str, Any]]) -> BatchResult:
        if not docs:
            return BatchResult()
        self.batches += 1
        journal_id = f"{self.run_id}-{self.batches}"
        users = sorted({d["user_id"] for d in docs})
        IN_FLIGHT.add(journal_id)
        try:
            return self._write(journal_id, users, docs)
        except BaseException:
            # what we remember of bucket fill levels and counter ids may be wrong now
            self.buckets.forget()
            self._stat_ids.clear()
            raise
        finally:
            IN_FLIGHT.discard(journal_id)

    def _write(self, journal_id: str, users: list[int], docs: list[dict[str, Any]]) -> BatchResult:
        from pymongo.errors import BulkWriteError

        from dbcli.mongo import connection as mongo

        with mongo.errors_translated():
            self.db[JOURNAL].insert_one(journal_entry(journal_id, users))
            self._crash_point("journal")
            failed: set[int] = set()
            try:
                self.db[EVENTS].insert_many(docs, ordered=False)
            except BulkWriteError as e:
                errors = e.details.get("writeErrors") or []
                other = [w for w in errors if w.get("code") != 11000]
                if other:
                    raise _write_error(EVENTS, other[0]) from e
                failed = {int(w["index"]) for w in errors}
            fresh = [d for i, d in enumerate(docs) if i not in failed]
            self._crash_point("events")
            self.buckets.add(fresh)
            self._crash_point("buckets")
            self._count(fresh)
            self._crash_point("stats")
            self.db[JOURNAL].delete_one({"_id": journal_id})
        return BatchResult(inserted=len(fresh), duplicates=len(failed))

    def _count(self, fresh: list[dict[str, Any]]) -> None:
        """$inc the counters of the users of the freshly inserted events (never of duplicates)."""
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        per_user = fold_stats(fresh)
        if not per_user:
            return
        coll = self.db[STATS]
        unknown = [u for u in per_user if u not in self._stat_ids]
        if unknown:
            for doc in coll.find({"user_id": {"$in": unknown}}, {"_id": 1, "user_id": 1}):
                self._stat_ids[doc["user_id"]] = doc["_id"]
        updates, inserts = [], []
        for uid, st in per_user.items():
            if uid in self._stat_ids:
                updates.append(UpdateOne({"_id": self._stat_ids[uid]}, increment(st)))
            else:
                doc = stats_doc(uid, st)
                validate(self.s, STATS, doc, f"user_stats of user {uid}")
                inserts.append(doc)
        retry: list[int] = []
        if updates and self.s.bulk_write(coll, updates) != len(updates):
            # a document vanished under us (a concurrent rebuild): write those users again
            present = {d["user_id"] for d in coll.find({"user_id": {"$in": list(per_user)}}, {"user_id": 1})}
            retry += [u for u in per_user if u in self._stat_ids and u not in present]
        if inserts:
            try:
                coll.insert_many(inserts, ordered=False)
            except BulkWriteError as e:
                errors = e.details.get("writeErrors") or []
                if any(w.get("code") != 11000 for w in errors):
                    raise _write_error(STATS, errors[0]) from e
                retry += [inserts[int(w["index"])]["user_id"] for w in errors]  # created concurrently
        for doc in inserts:
            self._stat_ids.setdefault(doc["user_id"], doc["_id"])
        for uid in retry:
            self._stat_ids.pop(uid, None)
            coll.update_one({"user_id": uid}, increment(per_user[uid]), upsert=True)

    def _crash_point(self, where: str) -> None:
        # Test hook (documented in the README, "Activity"): DBCLI_TEST_CRASH_AFTER=journal|events|buckets|stats
        # makes the process die like a SIGKILL right after that step of its first batch, so tests
        # can prove the recovery. Unset in normal use: one dict lookup per batch.
        if os.environ.get(CRASH_ENV) == where:
            os._exit(137)


def journal_entry(entry_id: str, users: list[int] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": entry_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": dt.datetime.now(dt.UTC)}
    if users is None:
        doc["all"] = True
    else:
        doc["users"] = users
    return doc


def _write_error(collection: str, error: dict[str, Any]) -> DbcliError:
    from dbcli.config.load import redact_text

    text = redact_text(str(error.get("errmsg", "write failed"))).splitlines()[0][:300]
    if error.get("code") == 121:
        return InvalidInputError(f"document failed validation in {collection}: {text}")
    if error.get("code") == 11000:
        return ConflictError(f"duplicate key in {collection}: {text}")
    return DbcliError(f"MongoDB error in {collection}: {text}")


# ---- counters ----------------------------------------------------------------------------------

def fold_stats(docs: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per user: n, counts by type key, first, last and the newest extended reference."""
    out: dict[int, dict[str, Any]] = {}
    for d in docs:
        st = out.get(d["user_id"])
        ts = d["timestamp"]
        if st is None:
            st = out[d["user_id"]] = {"n": 0, "counts": defaultdict(int), "first": ts, "last": ts,
                                      "user": d.get("user")}
        st["n"] += 1
        st["counts"][type_key(d["type"])] += 1
        st["first"] = min(st["first"], ts)
        st["last"] = max(st["last"], ts)
        if d.get("user") is not None:
            st["user"] = d["user"]
    return out


def increment(st: dict[str, Any]) -> dict[str, Any]:
    """The update for a user's counters: $inc, and $min/$max so out-of-order events stay right."""
    inc = {"activity_count": st["n"], **{f"counts.{k}": v for k, v in st["counts"].items()}}
    update: dict[str, Any] = {"$inc": inc, "$min": {"first_activity": st["first"]},
                              "$max": {"last_activity": st["last"]}}
    if st.get("user") is not None:
        update["$set"] = {"user": st["user"]}
    return update


def stats_doc(user_id: int, st: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"user_id": user_id, "activity_count": st["n"], "counts": dict(st["counts"]),
                           "first_activity": st["first"], "last_activity": st["last"]}
    if st.get("user") is not None:
        doc["user"] = st["user"]
    return doc


# ---- buckets -----------------------------------------------------------------------------------

Pair = tuple[int, str]  # (user_id, hour)


class BucketWriter:
    """Appends event summaries to the open bucket of each (user, hour); a full one starts seq + 1.

    Each write names its bucket by ``_id`` and carries the guard ``count <= cap - k``, so a bucket
    can never overflow even when the remembered state is stale (another writer appended); a write
    the guard stops is detected (matched count) and planned again from a fresh read.

    On FerretDB the guard is left out: it only narrows by ``_id`` in SQL, so any other condition
    makes it decode every bucket of the collection for every write (measured 3.5x slower). There,
    concurrent ingests into the same user and hour are not supported (the README, "Activity").
    """

    def __init__(self, session: Session) -> None:
        self.s = session
        self.coll = session.db[BUCKETS]
        self.cap = session.cap
        self._open: dict[Pair, tuple[int, int, Any] | None] = {}  # pair -> (seq, count, _id) or no bucket

    def forget(self) -> None:
        self._open.clear()

    def add(self, docs: list[dict[str, Any]]) -> None:
        pending: dict[Pair, list[dict[str, Any]]] = defaultdict(list)
        for d in sorted(docs, key=lambda d: (d["timestamp"], d["event_id"])):
            pending[(d["user_id"], d["hour"])].append(summary(d))
        for _attempt in range(8):
            if not pending:
                return
            self._load([p for p in pending if p not in self._open])
            pending = self._apply(pending)
            for pair in pending:  # stale state: read again
                self._open.pop(pair, None)
        raise ConflictError("activity buckets keep changing under this writer; run it again")

    def _load(self, pairs: list[Pair]) -> None:
        if not pairs:
            return
        if len(self._open) > 200_000:  # bound the memory of long runs
            self._open.clear()
        wanted = set(pairs)
        found: dict[Pair, tuple[int, int, Any]] = {}
        query = {"user_id": {"$in": sorted({u for u, _ in wanted})}, "hour": {"$in": sorted({h for _, h in wanted})}}
        for b in self.coll.find(query, {"user_id": 1, "hour": 1, "seq": 1, "count": 1}):
            pair = (b["user_id"], b["hour"])
            if pair in wanted and (pair not in found or b["seq"] > found[pair][0]):
                found[pair] = (b["seq"], b["count"], b["_id"])
        for pair in wanted:
            self._open[pair] = found.get(pair)

    def _apply(self, pending: dict[Pair, list[dict[str, Any]]]) -> dict[Pair, list[dict[str, Any]]]:
        """Write what fits; return the summaries that must be planned again."""
        from bson import ObjectId
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        updates: list[tuple[Any, Pair, list[dict[str, Any]]]] = []
        inserts: list[tuple[dict[str, Any], Pair, list[dict[str, Any]]]] = []
        for pair, items in pending.items():
            state = self._open.get(pair)
            if state is not None and state[1] < self.cap:
                seq, count, bid = state
                k = min(self.cap - count, len(items))
                chunk, items = items[:k], items[k:]
                where = {"_id": bid, "count": {"$lte": self.cap - k}} if self.s.guard_buckets else {"_id": bid}
                updates.append((UpdateOne(where,
                                          {"$push": {"events": {"$each": chunk}}, "$inc": {"count": k}}),
                                pair, chunk))
                state = (seq, count + k, bid)
            while items:
                chunk, items = items[:self.cap], items[self.cap:]
                seq = state[0] + 1 if state is not None else 0
                doc = {"_id": ObjectId(), "user_id": pair[0], "hour": pair[1], "seq": seq, "count": len(chunk),
                       "events": chunk}
                inserts.append((doc, pair, chunk))
                state = (seq, len(chunk), doc["_id"])
            self._open[pair] = state
        again: dict[Pair, list[dict[str, Any]]] = defaultdict(list)
        if updates and self.s.bulk_write(self.coll, [u for u, _, _ in updates]) != len(updates):
            for pair, chunk in self._unwritten([(p, c) for _, p, c in updates]):
                again[pair].extend(chunk)
        if inserts:
            try:
                self.coll.insert_many([d for d, _, _ in inserts], ordered=False)
            except BulkWriteError as e:
                errors = e.details.get("writeErrors") or []
                if any(w.get("code") != 11000 for w in errors):
                    raise _write_error(BUCKETS, errors[0]) from e
                for w in errors:  # another writer opened that seq first
                    _, pair, chunk = inserts[int(w["index"])]
                    again[pair].extend(chunk)
        return {p: sorted(v, key=lambda s: (s["ts"], s["event_id"])) for p, v in again.items()}

    def _unwritten(self, chunks: list[tuple[Pair, list[dict[str, Any]]]]) -> list[tuple[Pair, list[dict[str, Any]]]]:
        """The chunks whose guarded update did not apply (a chunk is written whole or not at all)."""
        pairs = {p for p, _ in chunks}
        present: set[str] = set()
        query = {"user_id": {"$in": sorted({u for u, _ in pairs})}, "hour": {"$in": sorted({h for _, h in pairs})}}
        for b in self.coll.find(query, {"user_id": 1, "hour": 1, "events.event_id": 1}):
            if (b["user_id"], b["hour"]) in pairs:
                present.update(e["event_id"] for e in b.get("events") or [])
        return [(p, c) for p, c in chunks if c[0]["event_id"] not in present]


# ---- recovery ----------------------------------------------------------------------------------

def recover(session: Session) -> int:
    """Repair the users of batches whose writer died; returns how many users were repaired."""
    from dbcli.mongo import connection as mongo
    from dbcli.shop.activity import stats as activity_stats

    with mongo.errors_translated():
        entries = [e for e in session.db[JOURNAL].find({}) if _is_stale(e)]
        if not entries:
            return 0
        every = any(e.get("all") for e in entries)
        users = None if every else sorted({u for e in entries for u in e.get("users") or []})
        repaired = activity_stats.repair(session, users)
        session.db[JOURNAL].delete_many({"_id": {"$in": [e["_id"] for e in entries]}})
    return repaired


def _is_stale(entry: dict[str, Any]) -> bool:
    """Whether the batch of a journal entry can no longer finish (its process is gone)."""
    pid = entry.get("pid")
    if entry.get("host") == socket.gethostname() and isinstance(pid, int):
        if pid == os.getpid():
            # ours: live if a thread of this process is still writing it; otherwise its batch
            # raised, or an earlier process with our (reused) pid wrote it
            return entry.get("_id") not in IN_FLIGHT
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False  # alive: a slow batch is not a dead one
    # another host: we cannot ask, so an entry older than any batch takes counts as dead
    started = entry.get("started")
    if not isinstance(started, dt.datetime):
        return True
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - started > STALE_AFTER
