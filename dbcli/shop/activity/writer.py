"""The exactly-once batch writer for activity events: journal, events, buckets, counters.

Per batch: (1) a journal entry names the batch's users, (2) ``insert_many`` of the events, the
unique ``event_id`` index rejecting those already stored, (3) the inserted events' summaries are
appended to their buckets, (4) their users' counters get ``$inc``/``$min``/``$max``, (5) the journal
entry is removed. Duplicates are never counted: either the batch that inserted them finished (its
counters are in), or it died and left its journal entry, and ``recompute.recover`` (run by every new
writer) recomputes those users.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from dbcli.mongo import connection as mongo
from dbcli.shop.activity.buckets import BucketWriter
from dbcli.shop.activity.journal import IN_FLIGHT, journal_entry
from dbcli.shop.activity.model import EVENTS, JOURNAL, STATS, type_key, write_error
from dbcli.shop.activity.recompute import recover, repair
from dbcli.shop.activity.session import Session, validate

CRASH_ENV = "DBCLI_TEST_CRASH_AFTER"  # test hook, see Writer._crash_point


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
                    raise write_error(EVENTS, other[0]) from e
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
        per_user = fold_stats(fresh)
        if not per_user:
            return
        coll = self.db[STATS]
        unknown = [u for u in per_user if u not in self._stat_ids]
        malformed: list[int] = []
        if unknown:
            for doc in coll.find({"user_id": {"$in": unknown}}, {"_id": 1, "user_id": 1, "activity_count": 1,
                                                                  "counts": 1}):
                if counters_ok(doc):
                    self._stat_ids[doc["user_id"]] = doc["_id"]
                else:
                    malformed.append(doc["user_id"])
        if malformed:
            # another tool broke these counters ($inc would fail on them): recompute them whole,
            # from the events, which already include this batch's
            repair(self.s, malformed)
            per_user = {u: st for u, st in per_user.items() if u not in malformed}
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
                    raise write_error(STATS, errors[0]) from e
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


def counters_ok(doc: dict[str, Any]) -> bool:
    """Whether a user_stats document can take ``increment`` (another tool may have set anything)."""
    count, counts = doc.get("activity_count"), doc.get("counts")
    return (isinstance(count, int) and not isinstance(count, bool)
            and (counts is None or (isinstance(counts, dict)
                                    and all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()))))


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
