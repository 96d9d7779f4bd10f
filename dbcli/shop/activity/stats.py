"""Reading activity: one user's counters (``activity stats``) and the most active users (``activity top``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import NotFoundError, UsageError
from dbcli.mongo import connection as mongo
from dbcli.shop.activity.model import (
    EVENTS,
    STATS,
    USABLE_QUERY,
    check_type,
    check_user_id,
    skipped_note,
    type_from_key,
)
from dbcli.shop.activity.session import open_session

STATS_COLUMNS = ["user_id", "name", "tier", "activity_count", "first_activity", "last_activity", "counts"]
TOP_COLUMNS = ["rank", "user_id", "name", "tier", "events"]
EVENT_FIELDS = {"_id": 1, "event_id": 1, "user_id": 1, "type": 1, "timestamp": 1, "hour": 1, "user": 1}


# ---- reading -----------------------------------------------------------------------------------

def user_stats(cfg: Config, user_id: Any) -> dict[str, Any]:
    """The counters of one user (exit 6 when none were recorded)."""
    return user_report(cfg, user_id)[0]


def user_report(cfg: Config, user_id: Any) -> tuple[dict[str, Any], int]:
    """The counters of one user, and how many of its events dbcli could not count (foreign documents)."""
    uid = check_user_id(user_id)
    with open_session(cfg, for_write=False) as s, mongo.errors_translated():
        doc = s.db[STATS].find_one({"user_id": uid}, {"_id": 0})
        # two counts on the user_id index: all of the user's events, and those dbcli can count
        skipped = (s.db[EVENTS].count_documents({"user_id": uid})
                   - s.db[EVENTS].count_documents({"user_id": uid, **USABLE_QUERY}))
    if not doc or not doc.get("activity_count"):
        note = f" ({skipped_note(skipped, uid)})" if skipped else ""
        raise NotFoundError(f"no activity recorded for user {uid}{note}")
    return doc, skipped


def stats_row(doc: dict[str, Any]) -> dict[str, Any]:
    user = doc.get("user") or {}
    counts = {type_from_key(k): v for k, v in (doc.get("counts") or {}).items()}
    return {"user_id": doc["user_id"], "name": user.get("name"), "tier": user.get("tier"),
            "activity_count": doc.get("activity_count", 0), "first_activity": doc.get("first_activity"),
            "last_activity": doc.get("last_activity"),
            "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def parse_day(text: str, option: str) -> str:
    """YYYY-MM-DD, or Nd for N days before today (UTC)."""
    m = re.fullmatch(r"(\d{1,5})d", text.strip())
    if m:
        return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=int(m.group(1)))).isoformat()
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise UsageError(f"{option} must look like 2025-01-31 or 7d, got {text!r}") from None


def top(cfg: Config, *, since: str | None = None, until: str | None = None, kind: str | None = None,
        limit: int = 10) -> list[dict[str, Any]]:
    """Most active users: from user_stats for all time, else counted from the events of the period."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    first = parse_day(since, "--since") if since else None
    last = parse_day(until, "--until") if until else None
    if first and last and first > last:
        raise UsageError(f"--since {first} is after --until {last}")
    with open_session(cfg, for_write=False) as s, mongo.errors_translated():
        if first is None and last is None and kind is None:
            cursor = (s.db[STATS].find({"activity_count": {"$gt": 0}}, {"_id": 0, "user_id": 1, "activity_count": 1})
                      .sort([("activity_count", -1), ("user_id", 1)]).limit(limit))
            ranked = [(d["user_id"], d["activity_count"]) for d in cursor]
        else:
            match: dict[str, Any] = {}
            if first or last:
                match["day"] = {**({"$gte": first} if first else {}), **({"$lte": last} if last else {})}
            if kind is not None:
                match["type"] = check_type(kind)
            # $match on the stored day key + $group/$sum + $sort + $limit: all in FerretDB v1.24
            pipeline = [{"$match": match}, {"$group": {"_id": "$user_id", "events": {"$sum": 1}}},
                        {"$sort": {"events": -1, "_id": 1}}, {"$limit": limit}]
            ranked = [(d["_id"], d["events"]) for d in s.db[EVENTS].aggregate(pipeline)]
        refs = {d["user_id"]: d.get("user") or {}
                for d in s.db[STATS].find({"user_id": {"$in": [u for u, _ in ranked]}}, {"user_id": 1, "user": 1})}
    return [{"rank": i, "user_id": uid, "name": refs.get(uid, {}).get("name"), "tier": refs.get(uid, {}).get("tier"),
             "events": n} for i, (uid, n) in enumerate(ranked, start=1)]
