"""Documents written into dbcli's activity collections by other tools (issue 15): skipped and counted.

The hand-written client below is the kind dbcli's users have: it inserts an event with only
``user_id``, ``timestamp`` and its own fields, then bumps the counters with an update the server
refuses (``$inc`` nested in ``$set``). Before the fix, ``activity rebuild-stats`` then crashed with
``KeyError: 'type'`` and left a journal entry that made every later ``record`` and ``ingest`` crash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from tests.fix_activity import BASE, ActivityEnv, assert_consistent, make_events, write_jsonl
from tests.helpers import invoke


def hand_written_client(db: Any, user_id: int, now: dt.datetime, **fields: Any) -> None:
    """What a user's own script does: its own event shape, then a counter update the server refuses."""
    db.user_activities.insert_one({"user_id": user_id, "timestamp": now, **fields})
    with contextlib.suppress(PyMongoError):  # the script ignores it, as such scripts do
        db.user_stats.update_many({"user_id": user_id},
                                  {"$set": {"last_activity": now, "activity_count": {"$inc": 1}}})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_foreign_documents_are_skipped_by_every_activity_command(act: ActivityEnv, tmp_path: Path) -> None:
    assert invoke(["activity", "record", "--user", "1", "--type", "login", "--at", "2025-03-01T08:00:00Z",
                   "-q"]).exit_code == 0
    db = act.db()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hand_written_client(db, 1, now, action="click", page="/cart")  # user 1 has dbcli counters
    hand_written_client(db, 3, now, event_id="theirs-1", action="view")  # user 3 has none yet
    db.user_activities.insert_one({"event_id": "theirs-2", "user_id": "2", "type": "login", "timestamp": "today"})
    # a rebuild that crashed before the fix left this behind; it must be recovered, not block writers
    db.activity_journal.insert_one({"_id": "rebuild-crashed", "host": socket.gethostname(), "pid": dead_pid(),
                                    "started": now, "all": True})
    db.client.close()

    r = invoke(["activity", "record", "--user", "1", "--type", "buy", "--at", "2025-03-01T09:00:00Z",
                "--event-id", "mine-1", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["recorded"] is True
    path = write_jsonl(tmp_path / "events.jsonl", make_events(40))
    r = invoke(["activity", "ingest", str(path), "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["inserted"] == 40

    r = invoke(["activity", "rebuild-stats", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["skipped"] == 3
    assert "skipped 3 events without the fields dbcli needs (event_id, user_id, type, timestamp, hour)" in r.stderr
    assert "recomputed 5 users from 42 events" in r.stderr
    state = assert_consistent(act)
    assert state["stats"][1]["activity_count"] >= 2

    r = invoke(["activity", "stats", "1", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["activity_count"] == state["stats"][1]["activity_count"]
    assert "1 event of user 1 in user_activities lacks fields dbcli needs" in r.stderr
    r = invoke(["activity", "stats", "3", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert "1 event of user 3 in user_activities lacks fields dbcli needs" in r.stderr
    for args in (["activity", "top", "-f", "json"], ["activity", "top", "--since", "2025-03-01", "-f", "json"],
                 ["activity", "top", "--type", "login", "-f", "json"]):
        r = invoke(args)
        assert r.exit_code == 0, (args, r.stderr)
        assert r.json(), args
    r = invoke(["activity", "record", "--user", "4", "--type", "login", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    r = invoke(["activity", "rebuild-stats", "--user", "3", "-f", "json"])
    assert (r.exit_code, r.json()["skipped"]) == (0, 1), r.stderr
    assert_consistent(act)


def test_malformed_counters_left_by_the_client_are_repaired_by_the_next_write(act: ActivityEnv) -> None:
    assert invoke(["activity", "record", "--user", "2", "--type", "login", "-q"]).exit_code == 0
    db = act.db()
    now = dt.datetime.now(dt.UTC)
    hand_written_client(db, 2, now, action="click")
    # whatever the server did with the refused update, make sure the counter is malformed
    db.user_stats.update_one({"user_id": 2}, {"$set": {"activity_count": "many"}})
    db.client.close()
    r = invoke(["activity", "record", "--user", "2", "--type", "buy", "--at", "2025-03-01T09:00:00Z", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    state = assert_consistent(act)
    assert state["stats"][2]["activity_count"] == 2


def test_stats_of_a_user_with_only_foreign_events(act: ActivityEnv) -> None:
    db = act.db()
    hand_written_client(db, 5, BASE, action="click")
    db.client.close()
    r = invoke(["activity", "stats", "5"])
    assert r.exit_code == 6
    assert "no activity recorded for user 5 (1 event of user 5 in user_activities lacks fields dbcli needs" \
        in r.stderr


def test_repeated_record_prints_the_stored_event(act: ActivityEnv) -> None:
    first = invoke(["activity", "record", "--user", "1", "--type", "buy", "--event-id", "order-9",
                    "--at", "2025-03-01T08:00:00Z", "-f", "json"])
    assert first.exit_code == 0, first.stderr
    again = invoke(["activity", "record", "--user", "1", "--type", "buy", "--event-id", "order-9", "-f", "json"])
    assert again.exit_code == 0, again.stderr
    assert again.json() == {**first.json(), "recorded": False}
    assert again.json()["timestamp"] == "2025-03-01T08:00:00+00:00"
    assert os.environ.get("DBCLI_TEST_CRASH_AFTER") is None
