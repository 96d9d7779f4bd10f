"""The exactly-once batch writer for activity events: journal, events, buckets, counters.

Per batch: (1) a journal entry names the batch's users, (2) ``insert_many`` of the events, the
unique ``event_id`` index rejecting those already stored, (3) the inserted events' summaries are
appended to their buckets, (4) their users' counters get ``$inc``/``$min``/``$max`` (one statement
per user, pre-aggregated over the batch, in unordered bulks), (5) the journal entry is removed.
Duplicates are never counted: either the batch that inserted them finished (its counters are in),
or it died and left its journal entry, and ``recompute.recover`` (run by every new writer) finishes
it. Steps 2-4 each send their independent parts over ``session.jobs`` connections at once (see
``parallel``); a step returns or raises only once all its parts have finished. On FerretDB 1.x
steps 3 and 4 rewrite the documents whole from a plan recorded in the journal entry, under a
writer lock (see ``rewrite``), over one connection.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from dbcli.mongo import connection as mongo
from dbcli.shop.activity import parallel, rewrite
from dbcli.shop.activity.buckets import BucketWriter
from dbcli.shop.activity.counters import added, counters_ok, fold_stats, increment, stats_doc
from dbcli.shop.activity.journal import IN_FLIGHT, journal_entry
from dbcli.shop.activity.model import BUCKETS, EVENTS, JOURNAL, STATS, id_key, write_error
from dbcli.shop.activity.recompute import recover, recover_entries, repair
from dbcli.shop.activity.session import Session, validate

CRASH_ENV = "DBCLI_TEST_CRASH_AFTER"  # test hook, see Writer._crash_point
# events per insert command: FerretDB 2.7 refuses more than 25,000 (pymongo splits at 100,000)
INSERT_CHUNK = 20_000


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
        self._check_first = not session.rewrite  # read which events are stored before inserting (see _insert)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbcli-activity-read")
        self.recovered_users = recover(session)

    def write(self, docs: list[dict[str, Any]]) -> BatchResult:
        if not docs:
            return BatchResult()
        self.batches += 1
        users = sorted({d["user_id"] for d in docs})
        if self.s.rewrite:
            with mongo.errors_translated(), rewrite.held(self.s, users, self._finish_dead):
                return self._rewrite(docs)
        journal_id = f"{self.run_id}-{self.batches}"
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
            self.db[JOURNAL].insert_one(journal_entry(journal_id, users, sorted({d["hour"] for d in docs})))
            self._crash_point("journal")
            fresh = self._insert(docs)
            self._crash_point("events")
            self.buckets.add(fresh)
            self._crash_point("buckets")
            self._count(fresh)
            self._crash_point("stats")
            self.db[JOURNAL].delete_one({"_id": journal_id})
        return BatchResult(inserted=len(fresh), duplicates=len(docs) - len(fresh))

    def _insert(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``insert_many`` of the events; returns those inserted (the others were already stored).

        DocumentDB (FerretDB 2.x) takes about 18 ms per event its unique index refuses (measured:
        5,000 duplicates outlast the 60 s socket timeout), an indexed read of 5,000 absent ids 0.07
        s: so the first batch, and each batch after one that met duplicates (a file ingested
        again), reads which of its events are stored and inserts only the others. Not on FerretDB
        1.x, where that read would scan the whole collection. The inserts go in ``session.jobs``
        parts at once.
        """
        todo = docs
        if self._check_first:
            stored: set[str] = set()
            for start in range(0, len(docs), INSERT_CHUNK):
                ids = [d["event_id"] for d in docs[start:start + INSERT_CHUNK]]
                stored.update(d["event_id"] for d in self.db[EVENTS].find({"event_id": {"$in": ids}},
                                                                          {"_id": 0, "event_id": 1}))
            if stored:
                todo = [d for d in docs if d["event_id"] not in stored]
        failed: set[int] = set()
        calls = [partial(self._insert_part, start, part)
                 for start, part in parallel.parts(todo, self.s.jobs, INSERT_CHUNK)]
        for refused in parallel.run_all(self.s.pool, calls):
            failed.update(refused)
        fresh = [d for i, d in enumerate(todo) if i not in failed] if failed else todo
        self._check_first = not self.s.rewrite and len(fresh) < len(docs)
        return fresh

    def _insert_part(self, start: int, part: Sequence[dict[str, Any]]) -> list[int]:
        """One ``insert_many`` of a batch's events; the indexes (from ``start``) of those already stored."""
        try:
            self.db[EVENTS].insert_many(part, ordered=False)
        except BulkWriteError as e:
            errors = e.details.get("writeErrors") or []
            other = [w for w in errors if w.get("code") != 11000]
            if other:
                raise write_error(EVENTS, other[0]) from e
            return [start + int(w["index"]) for w in errors]
        return []

    # ---- FerretDB 1.x: whole documents from a recorded plan, under the lock (see rewrite) -----

    def _rewrite(self, docs: list[dict[str, Any]]) -> BatchResult:
        self._crash_point("journal")
        fresh = self._insert(docs)
        self._crash_point("events")
        if fresh:
            # the two reads are full scans on FerretDB 1.x: run them side by side
            stored: set[Any] = set()
            buckets = self._reader.submit(self.buckets.plan, fresh, stored)
            try:
                stats, repaired = self._stats_plan(fresh, stored)
            finally:
                bucket_docs = buckets.result()
            if repaired:  # rewritten whole, buckets included, by the repair: not planned again
                bucket_docs = [b for b in bucket_docs if b["user_id"] not in repaired]
            for part, _rest in rewrite.record(self.s, {BUCKETS: bucket_docs, STATS: stats}):
                rewrite.write(self.s, BUCKETS, part.get(BUCKETS) or [], stored)
                self._crash_point("buckets")
                rewrite.write(self.s, STATS, part.get(STATS) or [], stored)
                self._crash_point("stats")
        rewrite.release(self.s)
        return BatchResult(inserted=len(fresh), duplicates=len(docs) - len(fresh))

    def _stats_plan(self, fresh: list[dict[str, Any]], stored: set[Any]) -> tuple[list[dict[str, Any]], set[int]]:
        """The new version of each counter document the fresh events change, and the users repaired
        instead (their counters were malformed: recomputed, buckets included, from the events).
        The ``_id``s of the documents that exist are added to ``stored``."""
        per_user = fold_stats(fresh)
        existing = {d["user_id"]: d for d in self.db[STATS].find({"user_id": {"$in": list(per_user)}})}
        malformed = {u for u, d in existing.items() if not counters_ok(d)}
        if malformed:  # recomputed whole from the events, which include this batch's
            repair(self.s, sorted(malformed))
        out = []
        for uid, st in per_user.items():
            if uid in malformed:
                continue
            if uid in existing:
                stored.add(id_key(existing[uid]["_id"]))
                out.append(added(existing[uid], st))
            else:
                doc = stats_doc(uid, st)
                validate(self.s, STATS, doc, f"user_stats of user {uid}")
                out.append({"_id": ObjectId(), **doc})
        return out, malformed

    def _finish_dead(self, entry: dict[str, Any]) -> None:
        self.recovered_users += recover_entries(self.s, [entry])

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
        try:  # updates and inserts in one unordered bulk, its parts over the session's connections
            matched = int(self.s.bulk(coll, [*updates, *(InsertOne(d) for d in inserts)])["nMatched"])
        except BulkWriteError as e:
            errors = e.details.get("writeErrors") or []
            refused = [w for w in errors if w.get("code") != 11000 or int(w["index"]) < len(updates)]
            if refused:
                raise write_error(STATS, refused[0]) from e
            retry += [inserts[int(w["index"]) - len(updates)]["user_id"] for w in errors]  # created concurrently
            matched = int(e.details["nMatched"])
        if matched != len(updates):
            # a document vanished under us (a concurrent rebuild): write those users again
            present = {d["user_id"] for d in coll.find({"user_id": {"$in": list(per_user)}}, {"user_id": 1})}
            retry += [u for u in per_user if u in self._stat_ids and u not in present]
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
