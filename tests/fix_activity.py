"""Activity tests: PostgreSQL users + a fresh MongoDB database, and the state the events imply.

``expected_state`` recomputes counters and bucket contents from the stored events with plain
Python, independently of dbcli's own code, so comparing it with what dbcli wrote proves the
counters and buckets are exactly what the events say.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

TIERS = ("standard", "silver", "gold", "platinum")
BASE = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class ActivityEnv:
    config: Path
    dsn: str
    mongo_uri: str
    database: str
    cap: int

    def db(self) -> Any:
        from pymongo import MongoClient

        client = MongoClient(self.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        return client[self.database]

    def add_users(self, n: int, start: int = 1) -> None:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            for uid in range(start, start + n):
                conn.execute("INSERT INTO users (user_id, email, name, tier) OVERRIDING SYSTEM VALUE "
                             "VALUES (%s, %s, %s, %s)", (uid, f"u{uid}@example.com", f"User {uid}",
                                                         TIERS[uid % len(TIERS)]))

    def set_config(self, **sections: Any) -> None:
        data = yaml.safe_load(self.config.read_text())
        data.update(sections)
        self.config.write_text(yaml.safe_dump(data))


@pytest.fixture
def act(schema_full_config_file: Path, pg_server: Any, schema_db: str, mongo_server: Any,
        mongo_db: str) -> Iterator[ActivityEnv]:
    """Users 1..5 in PostgreSQL, an empty MongoDB database, activity.bucket_size 5 (small, fast)."""
    env = ActivityEnv(schema_full_config_file, pg_server.conninfo(schema_db), mongo_server.uri, mongo_db, 5)
    env.set_config(activity={"bucket_size": env.cap})
    env.add_users(5)
    yield env


def make_events(n: int, users: int = 5, hours: int = 3, types: tuple[str, ...] = ("login", "page.view", "buy"),
                seed: int = 7) -> list[dict[str, Any]]:
    """Deterministic JSONL events spread over users and hours, some out of time order."""
    import random

    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = BASE + dt.timedelta(seconds=rng.randrange(hours * 3600))
        events.append({"user_id": rng.randint(1, users), "type": rng.choice(types), "timestamp": ts.isoformat(),
                       "data": {"n": i}})
    return events


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def expected_state(db: Any, cap: int) -> dict[str, Any]:
    """Counters and per-(user, hour) bucket contents as the stored events say."""
    stats: dict[int, dict[str, Any]] = {}
    pairs: dict[tuple[int, str], list[str]] = defaultdict(list)
    for e in db.user_activities.find():
        if not (isinstance(e.get("event_id"), str) and type(e.get("user_id")) is int and isinstance(e.get("type"), str)
                and isinstance(e.get("timestamp"), dt.datetime) and isinstance(e.get("hour"), str)):
            continue  # another tool's document, without the fields dbcli counts by: skipped
        st = stats.setdefault(e["user_id"], {"activity_count": 0, "counts": defaultdict(int),
                                             "first_activity": e["timestamp"], "last_activity": e["timestamp"],
                                             "user": e.get("user")})
        st["activity_count"] += 1
        st["counts"][e["type"].replace(".", "\uff0e")] += 1
        st["first_activity"] = min(st["first_activity"], e["timestamp"])
        st["last_activity"] = max(st["last_activity"], e["timestamp"])
        assert e["day"] == e["timestamp"].strftime("%Y-%m-%d") and e["hour"] == e["timestamp"].strftime("%Y-%m-%dT%H")
        pairs[(e["user_id"], e["hour"])].append(e["event_id"])
    for st in stats.values():
        st["counts"] = dict(st["counts"])
    return {"stats": stats, "buckets": {p: {"ids": sorted(ids), "buckets": math.ceil(len(ids) / cap)}
                                        for p, ids in pairs.items()}}


def actual_state(db: Any, cap: int) -> dict[str, Any]:
    """What dbcli wrote, in the same shape; asserts the bucket invariants on the way."""
    stats = {d["user_id"]: {k: d.get(k) for k in ("activity_count", "counts", "first_activity", "last_activity",
                                                  "user")}
             for d in db.user_stats.find()}
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for b in db.activity_buckets.find():
        assert 1 <= b["count"] <= cap and b["count"] == len(b["events"]), b
        grouped[(b["user_id"], b["hour"])].append(b)
    buckets = {}
    for pair, docs in grouped.items():
        docs.sort(key=lambda b: b["seq"])
        assert [b["seq"] for b in docs] == list(range(len(docs))), pair
        assert all(b["count"] == cap for b in docs[:-1]), pair  # only the last bucket is open
        ids = sorted(e["event_id"] for b in docs for e in b["events"])
        buckets[pair] = {"ids": ids, "buckets": len(docs)}
    return {"stats": stats, "buckets": buckets}


def assert_consistent(env: ActivityEnv) -> dict[str, Any]:
    db = env.db()
    try:
        want, got = expected_state(db, env.cap), actual_state(db, env.cap)
        assert got["stats"] == want["stats"]
        assert got["buckets"] == want["buckets"]
        assert list(db.activity_journal.find()) == []
        return got
    finally:
        db.client.close()
