"""FerretDB 1.x: counters and buckets rewritten whole, under a writer lock, from a plan in the journal.

FerretDB 1.x evaluates every update statement by reading the whole collection (about 18 ms per
statement with 3,000 small documents on SQLite, measured, growing with the collection), while a
``delete_many`` by a list of ``_id``s is one scan and ``insert_many`` is cheap (17-22k documents/s).
So there a batch reads the counters and open buckets it touches once, computes their new
versions, records them in its journal entry (the plan), then deletes the old versions and inserts
the new ones: four round trips per collection and batch instead of one statement per user.

A rewrite would lose a concurrent writer's increment, so on FerretDB 1.x the journal entry of the
batch in flight has a fixed ``_id`` (``LOCK``): inserting it takes the writer lock, removing it
releases it; a writer that finds it waits, or, when the holder's process is gone, claims the
entry and recovers it. Recovery replays the plan (delete the planned ``_id``s, insert the planned
documents: idempotent), which touches only what the batch touched; a batch that died before its
plan was recorded wrote no counter or bucket yet, and only its users are recomputed from the events.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import bson
from bson.binary import Binary
from bson.raw_bson import RawBSONDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from dbcli.errors import ConflictError
from dbcli.shop.activity.journal import IN_FLIGHT, is_stale, journal_entry
from dbcli.shop.activity.model import BUCKETS, JOURNAL, STATS, id_key, write_error
from dbcli.shop.activity.session import Session

LOCK = "ferretdb1-writer"
# a plan part above this size (BSON) is split: a journal entry must stay under 16 MB
PART_BYTES = 8 << 20
# how long a writer waits for another live writer's batch before giving up
WAIT = 600.0
# one batch at a time per process: the lock entry names the process, not the thread
_THREADS = threading.Lock()

Plan = dict[str, list[dict[str, Any]]]  # collection name -> the documents to write whole
Written = dict[str, list[Mapping[str, Any]]]  # the same, as encoded (RawBSONDocument) for writing


@contextmanager
def held(session: Session, users: list[int] | None, recover: Callable[[dict[str, Any]], object]) -> Iterator[str]:
    """The writer lock, as the journal entry of a batch touching ``users``; yields its ``_id``.

    ``recover`` finishes the entry of a dead holder (which this writer has claimed) and removes it.
    """
    journal = session.db[JOURNAL]
    entry = journal_entry(LOCK, users)
    deadline = time.monotonic() + WAIT
    with _THREADS:
        while True:
            try:
                journal.insert_one(entry)
                break
            except DuplicateKeyError:
                pass
            holder = journal.find_one({"_id": LOCK})
            if holder is None:
                continue
            if is_stale(holder) and _claim(session, holder):
                IN_FLIGHT.add(LOCK)
                try:
                    recover(holder)
                finally:
                    IN_FLIGHT.discard(LOCK)
                continue
            if time.monotonic() > deadline:
                raise ConflictError(f"another activity writer (pid {holder.get('pid')} on {holder.get('host')}) "
                                    f"has held the FerretDB writer lock for over {WAIT:.0f} s",
                                    hint="wait for it, or stop it: its batch is recovered by the next writer")
            time.sleep(0.05)
        IN_FLIGHT.add(LOCK)
        try:
            yield LOCK
        finally:
            IN_FLIGHT.discard(LOCK)


def _claim(session: Session, holder: dict[str, Any]) -> bool:
    """Make a dead holder's entry ours (plan and users kept), so no other writer recovers it too."""
    who: dict[str, Any] = {k: holder[k] for k in ("host", "pid", "started") if k in holder}
    mine: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "started": dt.datetime.now(dt.UTC)}
    return bool(session.db[JOURNAL].update_one({"_id": LOCK, **who}, {"$set": mine}).matched_count)


def release(session: Session) -> None:
    session.db[JOURNAL].delete_one({"_id": LOCK})


def record(session: Session, plan: Plan) -> Iterator[tuple[Written, list[int]]]:
    """Record ``plan`` in the lock entry part by part; yields each part and the users of the later parts.

    A part is recorded before it is written, with ``rest`` naming the users of the parts not yet
    recorded, so recovery replays the part and recomputes only those users. The documents are
    stored as one binary string of concatenated BSON per collection, zlib-compressed (level 1,
    several times smaller): FerretDB stores and reads that far faster than thousands of nested
    documents.
    """
    parts: list[list[tuple[str, dict[str, Any], bytes]]] = [[]]
    size = 0
    for name in (BUCKETS, STATS):
        for doc in plan.get(name) or []:
            raw = bson.encode(doc)
            if size + len(raw) > PART_BYTES and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append((name, doc, raw))
            size += len(raw)
    for i, part in enumerate(parts):
        rest = sorted({doc["user_id"] for later in parts[i + 1:] for _, doc, _ in later})
        stored = {name: Binary(zlib.compress(b"".join(raw for n, _, raw in part if n == name), 1))
                  for name in (BUCKETS, STATS)}
        session.db[JOURNAL].update_one({"_id": LOCK}, {"$set": {"plan": stored, "rest": rest}})
        # the encoded documents themselves are inserted: nothing encoded twice
        written: Written = {name: [RawBSONDocument(raw) for n, _, raw in part if n == name]
                            for name in (BUCKETS, STATS)}
        yield written, rest


def write(session: Session, name: str, docs: Sequence[Mapping[str, Any]], stored: set[Any] | None = None) -> None:
    """Replace documents whole by ``_id``: delete the old versions, insert the planned ones.

    ``stored``: the ``_id``s that exist, as ``model.id_key`` (a batch knows them); None deletes every planned ``_id``
    first (recovery, after a crash anywhere in here: idempotent).
    """
    if not docs:
        return
    coll = session.db[name]
    old = [d["_id"] for d in docs if stored is None or id_key(d["_id"]) in stored]
    if old:
        coll.delete_many({"_id": {"$in": old}})
    try:
        coll.insert_many(docs, ordered=False)
    except BulkWriteError as e:
        errors = e.details.get("writeErrors") or []
        raise write_error(name, errors[0]) from e


def replay(session: Session, plan: dict[str, Any]) -> None:
    """Write a recorded plan part again (buckets first, as the batch does)."""
    for name in (BUCKETS, STATS):
        raw = plan.get(name)
        if raw:
            write(session, name, list(bson.decode_all(zlib.decompress(bytes(raw)))))
