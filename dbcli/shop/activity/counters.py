"""Per-user counters (``user_stats``): a batch's events folded per user, and the writes that add them.

A batch folds its fresh events into one delta per user (``fold_stats``); on MongoDB the delta is
one ``$inc``/``$min``/``$max`` update (``increment``), on FerretDB 1.x it is added to the stored
document client-side (``added``) and the document rewritten whole (see ``rewrite``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from dbcli.shop.activity.model import type_key


def fold_stats(docs: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per user: n, counts by type key, first, last and the newest extended reference."""
    out: dict[int, dict[str, Any]] = {}
    for d in docs:
        st = out.get(d["user_id"])
        ts = d["timestamp"]
        if st is None:
            st = out[d["user_id"]] = {"n": 0, "counts": defaultdict(int), "first": ts, "last": ts,
                                      "user": d.get("user")}
        st["n"] += 1
        st["counts"][type_key(d["type"])] += 1
        st["first"] = min(st["first"], ts)
        st["last"] = max(st["last"], ts)
        if d.get("user") is not None:
            st["user"] = d["user"]
    return out


def counters_ok(doc: dict[str, Any]) -> bool:
    """Whether a user_stats document can take ``increment`` (another tool may have set anything)."""
    count, counts = doc.get("activity_count"), doc.get("counts")
    return (isinstance(count, int) and not isinstance(count, bool)
            and (counts is None or (isinstance(counts, dict)
                                    and all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()))))


def increment(st: dict[str, Any]) -> dict[str, Any]:
    """The update for a user's counters: $inc, and $min/$max so out-of-order events stay right."""
    inc = {"activity_count": st["n"], **{f"counts.{k}": v for k, v in st["counts"].items()}}
    update: dict[str, Any] = {"$inc": inc, "$min": {"first_activity": st["first"]},
                              "$max": {"last_activity": st["last"]}}
    if st.get("user") is not None:
        update["$set"] = {"user": st["user"]}
    return update


def stats_doc(user_id: int, st: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"user_id": user_id, "activity_count": st["n"], "counts": dict(st["counts"]),
                           "first_activity": st["first"], "last_activity": st["last"]}
    if st.get("user") is not None:
        doc["user"] = st["user"]
    return doc


def added(doc: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (which ``counters_ok``) with the delta ``st`` applied, as ``increment`` would leave it."""
    new = dict(doc)
    new["activity_count"] = doc["activity_count"] + st["n"]
    counts = dict(doc.get("counts") or {})
    for k, v in st["counts"].items():
        counts[k] = counts.get(k, 0) + v
    new["counts"] = counts
    old_first: Any = doc.get("first_activity")
    old_last: Any = doc.get("last_activity")
    # a date against a date is what dbcli writes; another tool's value of another type is kept
    new["first_activity"] = (min(old_first, st["first"]) if type(old_first) is type(st["first"])
                             else st["first"] if old_first is None else old_first)
    new["last_activity"] = (max(old_last, st["last"]) if type(old_last) is type(st["last"])
                            else st["last"] if old_last is None else old_last)
    if st.get("user") is not None:
        new["user"] = st["user"]
    return new
