"""A batch written over several connections at once: one part refused while the others apply."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.fix_activity import BASE, ActivityEnv, assert_consistent, write_jsonl
from tests.helpers import invoke


def _event(user: int, kind: str, at: dt.datetime) -> dict[str, Any]:
    return {"user_id": user, "type": kind, "timestamp": at.isoformat(), "data": {"u": user}}


def test_part_size_makes_at_least_jobs_parts_within_the_limit() -> None:
    from dbcli.shop.activity.parallel import part_size, parts

    assert part_size(5000, 2, 1000) == 1000
    assert part_size(1500, 2, 1000) == 750
    assert part_size(5, 2, 1000) == 3
    assert part_size(0, 2, 1000) == 1
    assert [(s, list(p)) for s, p in parts([1, 2, 3, 4, 5], 2, 1000)] == [(0, [1, 2, 3]), (3, [4, 5])]


def test_one_refused_part_of_the_counters_is_recovered_exactly(act: ActivityEnv, load_cfg: Any,
                                                              tmp_path: Path) -> None:
    from dbcli.shop.activity.session import open_session

    with open_session(load_cfg()) as s:
        if s.jobs < 2:
            pytest.skip("FerretDB 1.x: a batch is written over one connection (see activity.parallel)")
    first = [_event(u, "login", BASE + dt.timedelta(minutes=u)) for u in range(1, 6)]
    r = invoke(["activity", "ingest", str(write_jsonl(tmp_path / "first.jsonl", first)), "-q"])
    assert r.exit_code == 0, r.stderr
    db = act.db()
    # a constraint of the server's own that the counter updates of users 3 and 4 break together:
    # their newest events share a timestamp, and the five updates go out in two parts (1-3, 4-5)
    db.user_stats.create_index("last_activity", unique=True, name="test_unique_last")
    later = BASE + dt.timedelta(hours=1)
    second = [_event(1, "buy", later + dt.timedelta(minutes=1)), _event(2, "buy", later + dt.timedelta(minutes=2)),
              _event(3, "buy", later), _event(4, "search", later), _event(5, "buy", later + dt.timedelta(minutes=5))]
    path = write_jsonl(tmp_path / "second.jsonl", second)
    failed = invoke(["activity", "ingest", str(path), "-f", "json"])
    assert failed.exit_code == 7, failed.stderr  # ConflictError: duplicate key in user_stats
    assert "duplicate key in user_stats" in failed.stderr
    assert db.user_activities.count_documents({}) == 10  # every event is stored...
    counted = sum(d["activity_count"] for d in db.user_stats.find())
    assert 5 < counted < 10  # ...the other part's counters applied, the refused one's not
    assert db.activity_journal.count_documents({}) == 1  # the batch is on record for recovery
    db.user_stats.drop_index("test_unique_last")
    db.client.close()

    again = invoke(["activity", "ingest", str(path), "-f", "json"])
    assert again.exit_code == 0, again.stderr
    assert again.json()["inserted"] == 0 and again.json()["duplicates"] == 5
    assert "recovered the counters of 5 users left by an interrupted run" in again.stderr
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == 10
