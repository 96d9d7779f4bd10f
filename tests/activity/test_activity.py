"""activity record / ingest / stats / top: counters, buckets and references match the events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fix_activity import BASE, ActivityEnv, assert_consistent, make_events, write_jsonl
from tests.helpers import invoke, run_entry


def test_record_writes_event_counters_and_bucket(act: ActivityEnv) -> None:
    r = invoke(["activity", "record", "--user", "2", "--type", "page.view", "--data", '{"path": "/cart"}',
                "--at", "2025-03-01T10:15:30.123456+02:00", "--event-id", "req-1", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"event_id": "req-1", "user_id": 2, "type": "page.view",
                        "timestamp": "2025-03-01T08:15:30.123000+00:00", "recorded": True}
    # an earlier event recorded later: first_activity must move back, last_activity stay
    r = invoke(["activity", "record", "--user", "2", "--type", "login", "--at", "2025-03-01T07:00:00Z", "-q"])
    assert r == type(r)(0, "", "")
    db = act.db()
    event = db.user_activities.find_one({"event_id": "req-1"}, {"_id": 0})
    assert event == {"event_id": "req-1", "user_id": 2, "type": "page.view",
                     "timestamp": dt.datetime(2025, 3, 1, 8, 15, 30, 123000, tzinfo=dt.UTC),
                     "day": "2025-03-01", "hour": "2025-03-01T08", "data": {"path": "/cart"},
                     "user": {"name": "User 2", "tier": "gold"}}
    stats = db.user_stats.find_one({"user_id": 2}, {"_id": 0})
    assert stats == {"user_id": 2, "activity_count": 2, "counts": {"page\uff0eview": 1, "login": 1},
                     "first_activity": dt.datetime(2025, 3, 1, 7, 0, tzinfo=dt.UTC),
                     "last_activity": dt.datetime(2025, 3, 1, 8, 15, 30, 123000, tzinfo=dt.UTC),
                     "user": {"name": "User 2", "tier": "gold"}}
    assert [b["hour"] for b in db.activity_buckets.find().sort("hour")] == ["2025-03-01T07", "2025-03-01T08"]
    db.client.close()
    assert_consistent(act)

    r = invoke(["activity", "stats", "2", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"user_id": 2, "name": "User 2", "tier": "gold", "activity_count": 2,
                        "first_activity": "2025-03-01T07:00:00+00:00",
                        "last_activity": "2025-03-01T08:15:30.123000+00:00",
                        "counts": {"login": 1, "page.view": 1}}


def test_record_same_event_id_twice_changes_nothing(act: ActivityEnv) -> None:
    args = ["activity", "record", "--user", "1", "--type", "buy", "--event-id", "order-77", "-f", "json"]
    assert invoke(args).json()["recorded"] is True
    again = invoke(args)
    assert again.exit_code == 0
    assert again.json()["recorded"] is False
    assert "event order-77 was already recorded: nothing changed" in again.stderr
    db = act.db()
    assert db.user_stats.find_one({"user_id": 1})["activity_count"] == 1
    assert db.activity_buckets.find_one({"user_id": 1})["count"] == 1
    db.client.close()


def test_record_unknown_user_exits_6(act: ActivityEnv) -> None:
    r = invoke(["activity", "record", "--user", "999", "--type", "login"])
    assert r.exit_code == 6
    assert r.stderr == "Error: user 999 not found in PostgreSQL users\n"
    db = act.db()
    assert db.user_activities.count_documents({}) == 0
    db.client.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--type", "Login"], "Error: type must match ^[a-z][a-z0-9_.-]{0,63}$, got 'Login'\n"),
    (["--type", "x", "--data", "[1]"], "Error: data must be a JSON object\n"),
    (["--type", "x", "--data", "{oops"], "Error: --data is not valid JSON: Expecting property name enclosed in "
                                         "double quotes: line 1 column 2 (char 1)\n"),
    (["--type", "x", "--at", "yesterday"], "Error: timestamp must be ISO-8601 or epoch seconds, got 'yesterday'\n"),
])
def test_record_invalid_input_exits_5(act: ActivityEnv, args: list[str], message: str) -> None:
    r = invoke(["activity", "record", "--user", "1", *args])
    assert (r.exit_code, r.stderr) == (5, message)


def test_ingest_counts_match_events_and_second_run_changes_nothing(act: ActivityEnv, tmp_path: Path) -> None:
    events = make_events(240)
    events[10]["event_id"] = "given-id"
    events.append(dict(events[3]))  # the same line twice: one event
    path = write_jsonl(tmp_path / "events.jsonl", events)
    r = invoke(["activity", "ingest", str(path), "--batch-size", "50", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    first = r.json()
    assert {k: first[k] for k in ("read", "inserted", "duplicates", "invalid", "batches")} == \
        {"read": 241, "inserted": 240, "duplicates": 1, "invalid": 0, "batches": 5}
    assert "240 events stored, 1 already recorded, 0 invalid" in r.stderr
    state = assert_consistent(act)
    db = act.db()
    before = {name: sorted(db[name].find(), key=str) for name in ("user_activities", "user_stats", "activity_buckets")}
    assert db.user_activities.count_documents({"event_id": "given-id"}) == 1

    r = invoke(["activity", "ingest", str(path), "--batch-size", "70", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert (r.json()["inserted"], r.json()["duplicates"]) == (0, 241)
    after = {name: sorted(db[name].find(), key=str) for name in before}
    assert after == before
    assert assert_consistent(act) == state
    db.client.close()


def test_ingest_from_stdin_with_epoch_and_at(act: ActivityEnv) -> None:
    lines = [{"user_id": 1, "type": "login", "at": 1740816000},
             {"user_id": "3", "type": "logout", "timestamp": "2025-03-01T08:00:00"}]
    r = invoke(["activity", "ingest", "-", "-f", "json"], input="".join(json.dumps(x) + "\n" for x in lines))
    assert r.exit_code == 0, r.stderr
    assert r.json()["inserted"] == 2
    db = act.db()
    assert db.user_activities.find_one({"user_id": 1})["timestamp"] == dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
    db.client.close()
    assert_consistent(act)


def test_ingest_with_one_bad_line_stores_nothing_and_names_it(act: ActivityEnv, tmp_path: Path) -> None:
    events = make_events(6)
    lines = [json.dumps(e) for e in events]
    lines.insert(2, '{"user_id": 1, "type": "login"}')  # line 3: no timestamp
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = invoke(["activity", "ingest", str(path)])
    assert r.exit_code == 5
    assert r.stderr.splitlines() == [
        "Warning: line 3: missing timestamp",
        "Error: 1 invalid line: 3 (line 3: missing timestamp); nothing was written"]
    db = act.db()
    assert [db[n].count_documents({}) for n in ("user_activities", "user_stats", "activity_buckets")] == [0, 0, 0]
    db.client.close()


def test_ingest_names_every_kind_of_bad_line(act: ActivityEnv, tmp_path: Path) -> None:
    ts = BASE.isoformat()
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"user_id": 1, "type": "login", "timestamp": ts}),
        "{not json",
        json.dumps({"user_id": 42, "type": "login", "timestamp": ts}),
        json.dumps({"user_id": 1, "type": "login", "timestamp": ts, "extra": 1}),
        "",
        json.dumps({"user_id": 0, "type": "login", "timestamp": ts}),
        json.dumps({"user_id": 2, "type": "login", "timestamp": ts, "event_id": "x" * 129}),
        json.dumps([1, 2]),
        json.dumps({"user_id": 2, "type": "login", "timestamp": ts, "data": "text"}),
    ]) + "\n")
    r = invoke(["activity", "ingest", str(path)])
    assert r.exit_code == 5
    assert r.stderr.splitlines()[-1] == ("Error: 7 invalid lines: 2, 3, 4, 6, 7, 8, 9 (line 2: invalid JSON "
                                         "(Expecting property name enclosed in double quotes: line 1 column 2 "
                                         "(char 1))); nothing was written")
    assert "Warning: line 3: user 42 not found in PostgreSQL users" in r.stderr
    assert "Warning: line 4: unknown field 'extra' (put extra attributes under data)" in r.stderr

    r = invoke(["activity", "ingest", str(path), "--skip-invalid", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert {k: r.json()[k] for k in ("read", "inserted", "invalid")} == {"read": 8, "inserted": 1, "invalid": 7}
    assert "Warning: line 9: data must be a JSON object (skipped)" in r.stderr
    assert_consistent(act)


def test_buckets_hold_at_most_200_events(act: ActivityEnv, tmp_path: Path) -> None:
    act.set_config(activity={"bucket_size": 200})
    act.cap = 200
    events = [{"user_id": 4, "type": "page.view", "timestamp": (BASE + dt.timedelta(seconds=i)).isoformat()}
              for i in range(450)]
    path = write_jsonl(tmp_path / "hour.jsonl", events)
    # batches of 150 make the writer top up an open bucket, then open the next one
    r = invoke(["activity", "ingest", str(path), "--batch-size", "150", "-q"])
    assert r.exit_code == 0, r.stderr
    db = act.db()
    assert [(b["seq"], b["count"]) for b in db.activity_buckets.find().sort("seq")] == [(0, 200), (1, 200), (2, 50)]
    db.client.close()
    assert_consistent(act)


def test_stats_without_activity_exits_6(act: ActivityEnv) -> None:
    r = invoke(["activity", "stats", "3"])
    assert (r.exit_code, r.stderr) == (6, "Error: no activity recorded for user 3\n")


def test_top_all_time_and_in_a_period(act: ActivityEnv, tmp_path: Path) -> None:
    rows = []
    for uid, n, day in ((1, 3, 1), (2, 5, 1), (3, 2, 2), (2, 1, 3)):
        for i in range(n):
            ts = dt.datetime(2025, 3, day, 12, i, tzinfo=dt.UTC).isoformat()
            rows.append({"user_id": uid, "type": "buy" if i == 0 else "view", "timestamp": ts})
    assert invoke(["activity", "ingest", str(write_jsonl(tmp_path / "e.jsonl", rows)), "-q"]).exit_code == 0
    r = invoke(["activity", "top", "-f", "json"])
    assert r.json() == [{"rank": 1, "user_id": 2, "name": "User 2", "tier": "gold", "events": 6},
                        {"rank": 2, "user_id": 1, "name": "User 1", "tier": "silver", "events": 3},
                        {"rank": 3, "user_id": 3, "name": "User 3", "tier": "platinum", "events": 2}]
    r = invoke(["activity", "top", "--since", "2025-03-02", "--until", "2025-03-03", "--limit", "1", "-f", "json"])
    assert [(x["user_id"], x["events"]) for x in r.json()] == [(3, 2)]
    r = invoke(["activity", "top", "--type", "buy", "-f", "csv"])
    assert r.stdout.splitlines() == ["rank,user_id,name,tier,events", "1,2,User 2,gold,2",
                                     "2,1,User 1,silver,1", "3,3,User 3,platinum,1"]
    r = invoke(["activity", "top", "--since", "2025-03-05", "--until", "2025-03-01"])
    assert (r.exit_code, r.stderr) == (2, "Error: --since 2025-03-05 is after --until 2025-03-01\n")
    r = invoke(["activity", "top", "--since", "last week"])
    assert (r.exit_code, r.stderr) == (2, "Error: --since must look like 2025-01-31 or 7d, got 'last week'\n")


def test_data_fields_listed_for_encryption_are_stored_encrypted(act: ActivityEnv) -> None:
    from dbcli.encryption.fields import generate_key

    act.set_config(encryption={"key": generate_key(), "fields": {"user_activities": ["data.ip"]}})
    r = invoke(["activity", "record", "--user", "1", "--type", "login", "--data", '{"ip": "10.1.2.3", "ok": true}'])
    assert r.exit_code == 0, r.stderr
    db = act.db()
    data = db.user_activities.find_one()["data"]
    db.client.close()
    assert data["ok"] is True and data["ip"] != "10.1.2.3" and "10.1.2.3" not in str(data["ip"])
    act.set_config(encryption={"key": generate_key(), "fields": {"user_activities": ["user_id"]}})
    r = invoke(["activity", "record", "--user", "1", "--type", "login"])
    assert r.exit_code == 3
    assert r.stderr.startswith("Error: encryption.fields.user_activities cannot include user_id")


def test_demo_step_records_and_shows_stats(act: ActivityEnv, load_cfg: Any) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo.activity import step as demo_step

    out, err = io.StringIO(), io.StringIO()
    demo_step(load_cfg(), Output(fmt="json", stdout=out, stderr=err))
    rows = json.loads(out.getvalue())
    assert [(r["user_id"], r["activity_count"]) for r in rows] == [(1, 5), (2, 5), (3, 5)]
    assert "15 new events" in err.getvalue()
    err = io.StringIO()
    demo_step(load_cfg(), Output(fmt="json", stdout=io.StringIO(), stderr=err))
    assert "0 new events, 15 already recorded" in err.getvalue()
    assert_consistent(act)


def test_batches_touching_more_than_100_users(act: ActivityEnv, tmp_path: Path) -> None:
    # FerretDB v1.24 never answers an update command of 100+ statements: dbcli must split them
    act.add_users(145, start=6)
    events = [{"user_id": uid, "type": "login", "timestamp": (BASE + dt.timedelta(minutes=m)).isoformat()}
              for m in range(2) for uid in range(1, 151)]
    path = write_jsonl(tmp_path / "many.jsonl", events)
    r = run_entry(["activity", "ingest", str(path), "--batch-size", "150", "-f", "json"], timeout=90)
    assert r.exit_code == 0, r.stderr
    assert r.json()["inserted"] == 300
    assert_consistent(act)


def test_demo_step_after_seed_extends_the_seeded_counters(schema_full_config_file: Path, pg_server: Any,
                                                          schema_db: str, mongo_server: Any, mongo_db: str,
                                                          load_cfg: Any) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo.activity import step as demo_step
    from dbcli.shop.seed.load import seed

    cfg = load_cfg()
    seed(cfg, users=10, products=5, orders=10, events=300, seed=1)
    env = ActivityEnv(schema_full_config_file, pg_server.conninfo(schema_db), mongo_server.uri, mongo_db, 200)
    before = assert_consistent(env)  # the seeded documents follow the same rules
    out = io.StringIO()
    demo_step(cfg, Output(fmt="json", stdout=out, stderr=io.StringIO()))
    after = assert_consistent(env)
    for row in json.loads(out.getvalue()):
        seeded = before["stats"].get(row["user_id"], {}).get("activity_count", 0)
        assert row["activity_count"] == after["stats"][row["user_id"]]["activity_count"] == seeded + 5
