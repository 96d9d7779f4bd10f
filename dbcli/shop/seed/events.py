"""Sample activity events in MongoDB, with the user_stats and activity_buckets they imply.

Events are generated in time order from the same RNG as the tables (after them) and written with
``insert_many``; the counters and buckets are folded in memory as the events go by, following the
incremental rules of the activity writer, so ``activity`` commands can carry on from seeded data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConflictError
from dbcli.mongo import connection as mongo
from dbcli.schema.files import collection_specs
from dbcli.shop.activity.model import COLLECTIONS, bucket_id, event_doc, type_key, write_error
from dbcli.shop.seed.rows import DAY, SampleData, pick, weights

INSERT_BATCH = 2000  # documents per insert_many
EVENT_TYPES = (("page_view", 40), ("product_view", 25), ("search", 10), ("add_to_cart", 8),
               ("login", 7), ("checkout", 3), ("logout", 3), ("remove_from_cart", 2), ("review", 2))
PAGES = ["/", "/deals", "/account", "/cart", "/help", "/categories", "/orders", "/wishlist"]
SEARCHES = ["laptop", "headphones", "tent", "novel", "desk", "shoes", "puzzle", "kettle", "gift"]

# (phase, done, total): phases are users, catalog, orders, events
Progress = Callable[[str, int, int], None]


class ActivityData:
    """Events in time order, plus the user_stats and activity_buckets they imply.

    The counters follow the incremental ingest rules: per user activity_count, first_activity,
    last_activity and counts per type; buckets hold up to ``bucket_size`` events per
    (user_id, hour, seq), seq starting at 0, events in arrival order.
    """

    def __init__(self, rng: random.Random, base: dt.datetime, pg: SampleData, events: int,
                 bucket_size: int) -> None:
        self.rng, self.pg, self.n = rng, pg, events
        self.end_ms = int(base.timestamp()) * 1000
        self.start_ms = self.end_ms - 30 * DAY * 1000
        self.bucket_size = bucket_size
        self.stats: dict[int, dict[str, Any]] = {}
        self.open_hour: str | None = None
        self.open_buckets: dict[int, list[dict[str, Any]]] = {}

    def events(self) -> Iterator[dict[str, Any]]:
        rng, pg = self.rng, self.pg
        user_cw = list(itertools.accumulate(rng.lognormvariate(0, 1.2) for _ in range(pg.n_users)))
        types, type_cw = weights(EVENT_TYPES)
        step = (self.end_ms - self.start_ms) / self.n if self.n else 0
        users = range(pg.n_users)
        for i in range(self.n):
            # strictly ordered timestamps, jittered within their slot, in whole milliseconds
            ms = self.start_ms + int((i + rng.random()) * step)
            ts = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
            u = pick(rng, users, user_cw)
            kind = pick(rng, types, type_cw)
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            yield event_doc(event_id, u + 1, kind, ts, self._data(kind),
                            {"name": pg.user_name[u], "tier": pg.user_tier[u]})

    def _data(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        n_products = self.pg.n_products
        if kind in ("product_view", "add_to_cart", "remove_from_cart", "review") and n_products:
            data: dict[str, Any] = {"product_id": rng.randint(1, n_products)}
            if kind == "add_to_cart":
                data["quantity"] = rng.choice((1, 1, 1, 2, 3))
            if kind == "review":
                data["rating"] = rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
            return data
        if kind == "search":
            return {"query": rng.choice(SEARCHES)}
        if kind == "login":
            return {"method": rng.choice(("password", "password", "sso", "magic_link"))}
        if kind == "checkout":
            return {"items": rng.randint(1, 5)}
        return {"path": rng.choice(PAGES)}

    def count(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Fold one event into the counters; returns buckets that are complete (their hour has passed)."""
        uid, ts, kind = event["user_id"], event["timestamp"], event["type"]
        st = self.stats.get(uid)
        if st is None:
            st = self.stats[uid] = {"user_id": uid, "activity_count": 0, "first_activity": ts,
                                    "last_activity": ts, "counts": {}, "user": event["user"]}
        st["activity_count"] += 1
        st["last_activity"] = max(st["last_activity"], ts)
        st["first_activity"] = min(st["first_activity"], ts)
        key = type_key(kind)  # counts keys cannot contain '.'; seed types never do
        st["counts"][key] = st["counts"].get(key, 0) + 1
        closed: list[dict[str, Any]] = []
        if event["hour"] != self.open_hour:
            closed = self.flush_buckets()
            self.open_hour = event["hour"]
        buckets = self.open_buckets.setdefault(uid, [])
        if not buckets or buckets[-1]["count"] >= self.bucket_size:
            buckets.append({"_id": bucket_id(uid, event["hour"], len(buckets)), "user_id": uid, "hour": event["hour"],
                            "seq": len(buckets), "count": 0, "events": []})
        bucket = buckets[-1]
        bucket["count"] += 1
        bucket["events"].append({"event_id": event["event_id"], "type": kind, "ts": ts})
        return closed

    def flush_buckets(self) -> list[dict[str, Any]]:
        out = [b for buckets in self.open_buckets.values() for b in buckets]
        self.open_buckets = {}
        return out


def mongo_empty(cfg: Config) -> bool:
    """Whether the activity collections hold no documents (the seed fills empty ones only)."""
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            return all(db[name].find_one({}, {"_id": 1}) is None for name in COLLECTIONS)
    finally:
        client.close()


def mongo_target(cfg: Config, events: int) -> tuple[Any, Any]:
    """(database, client) when events are wanted, after checking the collections are empty."""
    if not events:
        return None, None
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            for name in COLLECTIONS:
                if db[name].find_one({}, {"_id": 1}) is not None:
                    raise ConflictError(f"collection {name} already holds documents: seed fills empty "
                                        "collections only",
                                        hint="seed a fresh database, or run dbcli seed --reset to empty it first")
    except BaseException:
        client.close()
        raise
    return db, client


def load_activity(cfg: Config, db: Any, act: ActivityData, report: Progress,
                  enc: Encryptor | None = None) -> dict[str, int]:
    """Insert the events, then the buckets and counters they imply; returns documents per collection."""
    # pymongo is only needed when events are seeded: `dbcli seed --events 0` does without it
    from pymongo.errors import BulkWriteError

    specs = collection_specs(cfg)
    counts = dict.fromkeys(COLLECTIONS, 0)

    def insert(name: str, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        spec = specs.get(name)
        if spec is not None:
            # FerretDB enforces no validators: check what we write against the declared schema.
            # Seed documents all come from the same code, so the first of each batch stands for it.
            spec.validate(docs[0], f"seed {name} document")
        if enc is not None and enc.fields_for(name):  # validated as plain text, stored encrypted
            docs = [enc.encrypt_doc(name, d) for d in docs]
        try:
            db[name].insert_many(docs, ordered=True)
        except BulkWriteError as e:
            first = (e.details.get("writeErrors") or [{}])[0]
            raise write_error(name, {**first, "errmsg": first.get("errmsg") or str(e)}) from e
        counts[name] += len(docs)

    with mongo.errors_translated():
        batch: list[dict[str, Any]] = []
        buckets: list[dict[str, Any]] = []
        for event in act.events():
            batch.append(event)
            buckets.extend(act.count(event))
            if len(batch) >= INSERT_BATCH:
                insert("user_activities", batch)
                report("events", counts["user_activities"], act.n)
                batch = []
            if len(buckets) >= INSERT_BATCH:
                insert("activity_buckets", buckets)
                buckets = []
        insert("user_activities", batch)
        insert("activity_buckets", buckets + act.flush_buckets())
        stats = [act.stats[uid] for uid in sorted(act.stats)]
        for i in range(0, len(stats), INSERT_BATCH):
            insert("user_stats", stats[i:i + INSERT_BATCH])
        report("events", counts["user_activities"], act.n)
    return counts
