"""Built-in MongoDB reports on FerretDB: exact results on a small known set of events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke

# (user_id, name, tier, timestamp UTC, type). User 2 adds to cart *before* viewing; user 4's view
# is out of range; users 1 and 3 tie on 3 events in range.
EVENTS = [
    (1, "Ann", "gold", "2024-03-01 10:00", "view"),
    (1, "Ann", "gold", "2024-03-01 10:05", "add_to_cart"),
    (1, "Ann", "gold", "2024-03-02 09:00", "view"),
    (2, "Bob", "standard", "2024-03-01 11:00", "add_to_cart"),
    (2, "Bob", "standard", "2024-03-01 12:00", "view"),
    (3, "Cid", "silver", "2024-03-02 08:00", "view"),
    (3, "Cid", "silver", "2024-03-02 08:30", "view"),
    (3, "Cid", "silver", "2024-03-03 10:00", "add_to_cart"),
    (4, "Dee", "standard", "2024-02-28 10:00", "view"),
    (4, "Dee", "standard", "2024-03-01 00:30", "purchase"),
]
STATS = [(1, "Ann", "gold", 5), (2, "Bob", "standard", 7), (3, "Cid", "silver", 5)]


@pytest.fixture
def activity(schema_full_config_file: Path, mongo_server: Any, mongo_db: str, load_cfg: Callable[..., Any]) -> Any:
    client = mongo_server.client()
    try:
        db = client[mongo_db]
        docs = []
        for i, (user, name, tier, when, kind) in enumerate(EVENTS):
            stamp = dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC)
            docs.append({"event_id": f"e{i}", "user_id": user, "type": kind, "timestamp": stamp,
                         "day": stamp.strftime("%Y-%m-%d"), "hour": stamp.strftime("%Y-%m-%dT%H"),
                         "user": {"name": name, "tier": tier}})
        db.user_activities.insert_many(docs)
        db.user_stats.insert_many([{"user_id": u, "activity_count": n, "counts": {"view": n},
                                    "user": {"name": name, "tier": tier}} for u, name, tier, n in STATS])
    finally:
        client.close()
    return load_cfg()


def run(cfg: Any, name: str, **given: str) -> tuple[list[str], list[dict[str, Any]]]:
    from dbcli.reports import mongo_runner, registry

    report = registry.get(cfg, name)
    result = mongo_runner.run(cfg, report, report.resolve(given))
    return result.columns, result.rows


def test_daily_active_users(activity: Any) -> None:
    columns, rows = run(activity, "daily-active-users", **{"from": "2024-03-01", "to": "2024-03-02"})
    assert columns == ["day", "active_users", "events", "events_per_user"]
    assert rows == [{"day": "2024-03-01", "active_users": 3, "events": 5, "events_per_user": 1.67},
                    {"day": "2024-03-02", "active_users": 2, "events": 3, "events_per_user": 1.5}]


def test_activity_by_type(activity: Any) -> None:
    _, rows = run(activity, "activity-by-type", **{"from": "2024-03-01", "to": "2024-03-03"})
    assert rows == [{"type": "view", "events": 5, "users": 3, "events_per_user": 1.67},
                    {"type": "add_to_cart", "events": 3, "users": 3, "events_per_user": 1.0},
                    {"type": "purchase", "events": 1, "users": 1, "events_per_user": 1.0}]


def test_top_users(activity: Any) -> None:
    period = {"from": "2024-03-01", "to": "2024-03-03"}
    assert run(activity, "top-users", **period, limit="2")[1] == [{"user_id": 1, "events": 3},
                                                                  {"user_id": 3, "events": 3}]
    assert [r["user_id"] for r in run(activity, "top-users", **period)[1]] == [1, 3, 2, 4]


def test_funnel_counts_order_in_time(activity: Any) -> None:
    _, rows = run(activity, "funnel", first="view", then="add_to_cart", **{"from": "2024-03-01", "to": "2024-03-03"})
    # Bob added to cart before viewing: he does not convert
    assert rows == [{"step": 1, "type": "view", "users": 3, "conversion": 1.0},
                    {"step": 2, "type": "add_to_cart", "users": 2, "conversion": 0.6667}]
    _, rows = run(activity, "funnel", first="add_to_cart", then="view", **{"from": "2024-03-01", "to": "2024-03-03"})
    assert [r["users"] for r in rows] == [3, 2]  # Ann (view on the 2nd) and Bob
    _, rows = run(activity, "funnel", first="nothing", then="view", **{"from": "2024-03-01", "to": "2024-03-03"})
    assert rows[0]["users"] == 0 and rows[1]["conversion"] is None


def test_most_active_users_from_user_stats(activity: Any) -> None:
    columns, rows = run(activity, "most-active-users", limit="2")
    assert columns == ["user_id", "user.name", "user.tier", "activity_count"]
    assert rows == [{"user_id": 2, "user.name": "Bob", "user.tier": "standard", "activity_count": 7},
                    {"user_id": 1, "user.name": "Ann", "user.tier": "gold", "activity_count": 5}]


def test_daily_active_users_match_python(activity: Any) -> None:
    per_day: dict[str, set[int]] = {}
    for user, _, _, when, _ in EVENTS:
        per_day.setdefault(when[:10], set()).add(user)
    _, rows = run(activity, "daily-active-users", **{"from": "2024-01-01", "to": "2024-12-31"})
    assert {r["day"]: r["active_users"] for r in rows} == {d: len(u) for d, u in per_day.items()}


def test_cli_csv_and_chart(activity: Any) -> None:
    result = invoke(["report", "run", "activity-by-type", "-P", "from=2024-03-01", "-P", "to=2024-03-03",
                     "-f", "csv"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["type,events,users,events_per_user", "view,5,3,1.67",
                                          "add_to_cart,3,3,1.0", "purchase,1,1,1.0"]
    chart = invoke(["report", "run", "top-users", "-P", "from=2024-03-01", "-P", "to=2024-03-03", "-f", "table",
                    "--chart", "events"])
    assert chart.exit_code == 0
    assert [line for line in chart.stdout.splitlines() if "█" in line][-1].startswith("4  1  ")


def test_explain_mongo(activity: Any) -> None:
    result = invoke(["report", "explain", "daily-active-users", "-P", "from=2024-03-01", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    shown = result.json()
    assert shown["report"] == "daily-active-users" and shown["target"] == "mongo"
    assert "queryPlanner" in shown["plan"]


def test_bad_mongo_parameter_exits_5(activity: Any) -> None:
    result = invoke(["report", "run", "funnel", "-P", "first=view"])
    assert result.exit_code == 5
    assert result.stderr == "Error: report 'funnel': parameter 'then' is required (hint: --param then=VALUE)\n"


def test_ferretdb_group_computes_only_the_first_accumulator(activity: Any, mongo_server: Any, mongo_db: str) -> None:
    """Why the reports reduce on the server and roll up client-side: a FerretDB v1.24 limitation."""
    client = mongo_server.client()
    try:
        from dbcli.mongo.bulk import is_ferretdb1

        if not is_ferretdb1(client):  # FerretDB 2 computes every accumulator
            pytest.skip("FerretDB 1.x-specific")
        got = list(client[mongo_db].user_activities.aggregate(
            [{"$group": {"_id": None, "a": {"$sum": 1}, "b": {"$sum": 1}}}]))
    finally:
        client.close()
    assert got == [{"_id": None, "a": 10, "b": 0}]


def test_mongo_report_is_cached_and_invalidated_by_a_write(activity: Any, schema_full_config_file: Path,
                                                           mongo_server: Any, mongo_db: str, tmp_path: Path,
                                                           load_cfg: Callable[..., Any]) -> None:
    import yaml

    from dbcli.cache import store as cache

    data = yaml.safe_load(schema_full_config_file.read_text())
    data["cache"] = {"dir": str(tmp_path / "cache"), "ttl": 60}
    schema_full_config_file.write_text(yaml.safe_dump(data))
    args = ["report", "run", "top-users", "-P", "from=2024-03-01", "-P", "to=2024-03-03", "-f", "json"]
    first = invoke(args)
    assert first.exit_code == 0 and first.stderr == ""
    second = invoke(args)
    assert second.stdout == first.stdout and second.stderr.startswith("from the cache")
    client = mongo_server.client()
    try:
        client[mongo_db].user_activities.insert_one(
            {"event_id": "new", "user_id": 4, "type": "view", "day": "2024-03-03", "hour": "2024-03-03T11",
             "timestamp": dt.datetime(2024, 3, 3, 11, tzinfo=dt.UTC)})
    finally:
        client.close()
    assert cache.note_write(load_cfg(), ["mongo:user_activities"]) is True
    third = invoke(args)
    assert third.stderr == ""
    assert [r["events"] for r in third.json()] == [3, 3, 2, 2]
