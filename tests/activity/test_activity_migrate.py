"""A database written before buckets had derived ``_id``s (issue 19): the old unique index goes, data stays right."""

from __future__ import annotations

from pathlib import Path

from tests.fix_activity import ActivityEnv, assert_consistent, make_events, write_jsonl
from tests.helpers import invoke

LEGACY = "user_id_hour_seq_unique"


def test_a_database_of_the_old_layout_is_migrated_by_the_writers(act: ActivityEnv, tmp_path: Path) -> None:
    from dbcli.shop.activity.model import bucket_id

    first = write_jsonl(tmp_path / "first.jsonl", make_events(60))
    assert invoke(["activity", "ingest", str(first), "-q"]).exit_code == 0
    db = act.db()
    try:
        # what dbcli wrote before: ObjectId _ids and the unique (user_id, hour, seq) index
        old = [{k: v for k, v in b.items() if k != "_id"} for b in db.activity_buckets.find()]
        db.activity_buckets.delete_many({})
        db.activity_buckets.insert_many(old)
        db.activity_buckets.create_index([("user_id", 1), ("hour", 1), ("seq", 1)], unique=True, name=LEGACY)
    finally:
        db.client.close()

    more = write_jsonl(tmp_path / "more.jsonl", make_events(40, seed=11))
    r = invoke(["activity", "ingest", str(more), "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["inserted"] == 40
    db = act.db()
    try:
        assert LEGACY not in {ix["name"] for ix in db.activity_buckets.list_indexes()}
    finally:
        db.client.close()
    assert_consistent(act)  # old buckets appended to by their ObjectId, new ones by derived _id

    r = invoke(["activity", "rebuild-stats", "-f", "json"])  # the one-off move to derived _ids
    assert r.exit_code == 0, r.stderr
    assert r.json()["buckets_written"] > 0
    db = act.db()
    try:
        buckets = list(db.activity_buckets.find())
        assert all(b["_id"] == bucket_id(b["user_id"], b["hour"], b["seq"]) for b in buckets)
    finally:
        db.client.close()
    state = assert_consistent(act)
    again = invoke(["activity", "rebuild-stats", "-f", "json"])
    assert (again.json()["buckets_written"], again.json()["buckets_removed"]) == (0, 0)
    assert assert_consistent(act) == state
    assert sum(s["activity_count"] for s in state["stats"].values()) == 100
