"""Exactly-once under crashes: an ingest killed at any point and run again leaves exact counters."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fix_activity import BASE, ActivityEnv, assert_consistent, make_events, write_jsonl
from tests.helpers import invoke, run_entry


def _rebuild_changes_nothing(act: ActivityEnv, state: dict) -> None:
    r = invoke(["activity", "rebuild-stats", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["buckets_written"] == 0 and r.json()["buckets_removed"] == 0
    assert assert_consistent(act) == state


@pytest.mark.parametrize("point", ["journal", "events", "buckets", "stats"])
def test_crash_after_each_step_then_rerun(act: ActivityEnv, tmp_path: Path, point: str) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", make_events(120))
    crashed = run_entry(["activity", "ingest", str(path), "--batch-size", "40"],
                        env={"DBCLI_TEST_CRASH_AFTER": point})
    assert crashed.exit_code == 137, crashed.stderr
    db = act.db()
    inserted = db.user_activities.count_documents({})
    assert inserted == (0 if point == "journal" else 40)
    assert db.activity_journal.count_documents({}) == 1  # the unfinished batch is on record
    counted = sum(d["activity_count"] for d in db.user_stats.find())
    assert counted == (40 if point == "stats" else 0)
    db.client.close()

    again = invoke(["activity", "ingest", str(path), "--batch-size", "40", "-f", "json"])
    assert again.exit_code == 0, again.stderr
    assert again.json()["inserted"] + again.json()["duplicates"] == 120
    assert again.json()["inserted"] == 120 - inserted
    assert "recovered the counters of 5 users left by an interrupted run" in again.stderr
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == 120
    _rebuild_changes_nothing(act, state)


def test_crash_recovered_by_a_record_of_another_event(act: ActivityEnv, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", make_events(30))
    assert run_entry(["activity", "ingest", str(path)], env={"DBCLI_TEST_CRASH_AFTER": "buckets"}).exit_code == 137
    r = invoke(["activity", "record", "--user", "1", "--type", "login", "-q"])
    assert r.exit_code == 0, r.stderr
    assert_consistent(act)


def test_sigkill_mid_ingest_then_rerun_is_exact(act: ActivityEnv, tmp_path: Path) -> None:
    total = 1500
    path = write_jsonl(tmp_path / "big.jsonl", make_events(total, hours=6))
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "activity", "ingest", str(path), "--batch-size", "20",
                             "-q"], env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = act.db()
    deadline = time.monotonic() + 60
    try:
        while db.user_activities.estimated_document_count() < 200:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    stored = _settled_count(db.user_activities)
    assert 200 <= stored < total
    db.client.close()

    again = invoke(["activity", "ingest", str(path), "--batch-size", "200", "-f", "json"])
    assert again.exit_code == 0, again.stderr
    assert (again.json()["inserted"], again.json()["duplicates"]) == (total - stored, stored)
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == total
    _rebuild_changes_nothing(act, state)


def _settled_count(coll: Any) -> int:
    # A server finishes the insert that was in flight when the client died (FerretDB 2.7 on
    # DocumentDB commits it a moment later), so the count is read once it stops moving.
    last, since = coll.count_documents({}), time.monotonic()
    deadline = since + 20
    while time.monotonic() - since < 1.0:
        assert time.monotonic() < deadline, "the collection kept growing after the client was killed"
        time.sleep(0.1)
        now = coll.count_documents({})
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_rebuild_stats_repairs_writes_made_outside_dbcli(act: ActivityEnv, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", make_events(60))
    assert invoke(["activity", "ingest", str(path), "-q"]).exit_code == 0
    db = act.db()
    victim = db.activity_buckets.find_one({"user_id": 1})
    db.activity_buckets.delete_one({"_id": victim["_id"]})
    twice = db.activity_buckets.find_one({"user_id": 2, "count": {"$lt": act.cap}})
    db.activity_buckets.update_one({"_id": twice["_id"]}, {"$push": {"events": twice["events"][0]},
                                                           "$inc": {"count": 1}})
    db.user_stats.update_one({"user_id": 3}, {"$inc": {"activity_count": 7}})
    ts = BASE + dt.timedelta(days=2)
    db.user_activities.insert_one({"event_id": "outside", "user_id": 5, "type": "login", "timestamp": ts,
                                   "day": ts.strftime("%Y-%m-%d"), "hour": ts.strftime("%Y-%m-%dT%H")})
    db.user_stats.insert_one({"user_id": 77, "activity_count": 1})  # counters of a user without events
    db.client.close()
    with pytest.raises(AssertionError):
        assert_consistent(act)

    r = invoke(["activity", "rebuild-stats", "--user", "3", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["users"] == 1
    r = invoke(["activity", "rebuild-stats", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["stats_removed"] == 1 and r.json()["buckets_written"] >= 3
    assert "recomputed 5 users from 61 events" in r.stderr
    state = assert_consistent(act)
    assert 77 not in state["stats"]
    _rebuild_changes_nothing(act, state)


def _events(hour: dt.datetime, ids: range) -> list[dict]:
    return [{"event_id": f"e{i}", "user_id": 1, "type": "login", "timestamp": hour + dt.timedelta(seconds=i),
             "hour": hour.strftime("%Y-%m-%dT%H")} for i in ids]


def _layout(act: ActivityEnv, hour: dt.datetime) -> list[tuple[int, int]]:
    db = act.db()
    try:
        return [(b["seq"], b["count"]) for b in db.activity_buckets.find({"hour": hour.strftime("%Y-%m-%dT%H")})
                .sort("seq")]
    finally:
        db.client.close()


def test_guarded_bucket_writes_replan_when_another_writer_got_there_first(act: ActivityEnv, load_cfg: object) -> None:
    from dbcli.shop.activity.buckets import BucketWriter
    from dbcli.shop.activity.model import bucket_id
    from dbcli.shop.activity.session import open_session

    hour = BASE.replace(minute=0)
    with open_session(load_cfg()) as s:  # type: ignore[operator]
        s.guard_buckets = True  # what dbcli does on MongoDB (FerretDB skips the guard for speed)
        mine = BucketWriter(s)
        mine.add(_events(hour, range(0, 3)))
        assert _layout(act, hour) == [(0, 3)]
        # another writer fills seq 0 behind our back: our remembered count (3) is stale
        s.db.activity_buckets.update_one({"hour": hour.strftime("%Y-%m-%dT%H"), "seq": 0}, {
            "$push": {"events": {"$each": [{"event_id": "x1", "type": "login", "ts": hour},
                                           {"event_id": "x2", "type": "login", "ts": hour}]}},
            "$inc": {"count": 2}})
        mine.add(_events(hour, range(3, 5)))
        assert _layout(act, hour) == [(0, 5), (1, 2)]  # the guard refused the overflow; replanned

        later = hour + dt.timedelta(hours=1)
        mine.load([(1, later.strftime("%Y-%m-%dT%H"))])  # we believe that hour has no bucket yet
        # another writer opens seq 0 of that hour first (its _id derived from the key, as ours)
        s.db.activity_buckets.insert_one({"_id": bucket_id(1, later.strftime("%Y-%m-%dT%H"), 0), "user_id": 1,
                                          "hour": later.strftime("%Y-%m-%dT%H"), "seq": 0, "count": 1,
                                          "events": [{"event_id": "x3", "type": "login", "ts": later}]})
        mine.add(_events(later, range(10, 13)))  # our insert of seq 0 collides on _id: appended instead
        assert _layout(act, later) == [(0, 4)]


def test_event_id_is_the_documented_canonical_hash() -> None:
    import hashlib
    import json

    from dbcli.shop.activity.model import derive_event_id

    ts = dt.datetime(2025, 3, 1, 8, 1, 2, 345000, tzinfo=dt.UTC)
    for data in (None, {}, {"b": [1, {"z": "é", "a": None}], "a": 1.5}):
        canonical = json.dumps({"user_id": 7, "type": "page.view", "timestamp": "2025-03-01T08:01:02.345Z",
                                "data": data}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert derive_event_id(7, "page.view", ts, data) == hashlib.sha256(canonical.encode()).hexdigest()


def test_which_journal_entries_count_as_dead() -> None:
    import socket

    from dbcli.shop.activity.journal import IN_FLIGHT, is_stale

    now = dt.datetime.now(dt.UTC)
    here, me = socket.gethostname(), os.getpid()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert is_stale({"_id": "a", "host": here, "pid": int(dead), "started": now})
    assert is_stale({"_id": "b", "host": here, "pid": me, "started": now})  # ours, no thread writing it
    IN_FLIGHT.add("c")
    try:
        assert not is_stale({"_id": "c", "host": here, "pid": me, "started": now})
    finally:
        IN_FLIGHT.discard("c")
    assert not is_stale({"_id": "d", "host": here, "pid": os.getppid(), "started": now - dt.timedelta(hours=1)})
    assert not is_stale({"_id": "e", "host": "elsewhere", "pid": 1, "started": now})
    assert is_stale({"_id": "f", "host": "elsewhere", "pid": 1, "started": now - dt.timedelta(minutes=11)})
