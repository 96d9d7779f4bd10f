"""Deterministic sample data: the e-commerce tables (COPY) and activity events (MongoDB bulk inserts).

Same seed, same sizes, same base date: the same rows, byte for byte. Every random choice comes from
one ``random.Random(seed)`` consumed in a fixed order, and every timestamp is an offset from a fixed
base date, never ``now()``. Identifiers are assigned by the seed (1..N) and written with COPY, which
may supply values for ``GENERATED ALWAYS`` identity columns; the sequences are moved past them at
the end, so later inserts by the application continue at N+1.

Rows are generated in chunks and streamed into COPY, so memory stays flat however many orders are
asked for; the whole PostgreSQL load is one transaction (all or nothing). Seed fills an empty schema
only: it refuses (exit 7) when any of its tables or collections already holds data.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import queue
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dbcli.config.load import Config
from dbcli.errors import ConfigError, ConflictError, DbcliError, InvalidInputError, UsageError

if TYPE_CHECKING:
    import psycopg

    from dbcli.encryption.fields import Encryptor
    from dbcli.output import Output

BASE_DATE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DEFAULTS = {"users": 1000, "products": 200, "orders": 5000, "events": 10000}
PG_TABLES = ("users", "user_profiles", "addresses", "categories", "products", "product_categories",
             "orders", "order_items", "payments")
COLLECTIONS = ("user_activities", "user_stats", "activity_buckets")
IDENTITY = {"users": "user_id", "addresses": "address_id", "categories": "category_id",
            "products": "product_id", "orders": "order_id", "payments": "payment_id"}
SUMMARY_COLUMNS = ["target", "name", "rows"]
CHUNK = 5000  # users, products or orders per COPY round
INSERT_BATCH = 2000  # documents per insert_many
MAX_BUCKET = 200  # activity_buckets: the JSON Schema allows at most 200 events per bucket
# A seed lock key distinct from schema apply's: two concurrent seeds cannot both see an empty database.
LOCK_KEY = int.from_bytes(b"dbcli-sd", "big")

# (phase, done, total): phases are users, catalog, orders, events
Progress = Callable[[str, int, int], None]
T = TypeVar("T")

DAY = 86400
NULL = "\\N"  # COPY text format


# ---- vocabulary (plain ASCII without tabs, newlines or backslashes: COPY text needs no escaping) --

FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
         "Radia", "John", "Hedy", "Tim", "Katherine", "Guido", "Shafi", "Donald", "Lynn", "Niklaus",
         "Sophie", "Yukihiro", "Anita", "Bjarne", "Carol", "James", "Jean", "Leslie", "Mary", "Robin",
         "Susan", "Tony", "Ursula", "Vint", "Wendy", "Xavier", "Yvonne", "Zed", "Olga", "Pedro"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
        "Dijkstra", "Perlman", "McCarthy", "Lamarr", "Berners-Lee", "Johnson", "van Rossum", "Goldwasser",
        "Knuth", "Conway", "Wirth", "Wilson", "Matsumoto", "Borg", "Stroustrup", "Shaw", "Gosling",
        "Sammet", "Lamport", "Keller", "Milner", "Kare", "Hoare", "Franklin", "Cerf", "Hall", "Leroy",
        "Nakamura", "Okafor", "Novak", "Silva"]
TIERS = (("standard", 70), ("silver", 18), ("gold", 9), ("platinum", 3))
CITIES = [("Berlin", "DE", "1####"), ("Munich", "DE", "8####"), ("Paris", "FR", "75###"),
          ("Lyon", "FR", "69###"), ("London", "GB", "EC# #AA"), ("Leeds", "GB", "LS# #AA"),
          ("New York", "US", "10###"), ("Austin", "US", "787##"), ("Toronto", "CA", "M#A #A#"),
          ("Madrid", "ES", "28###"), ("Rome", "IT", "00###"), ("Amsterdam", "NL", "10## AA"),
          ("Hong Kong", "HK", None), ("Dublin", "IE", None), ("Tokyo", "JP", "1##-####")]
STREETS = ["Main Street", "High Street", "Station Road", "Park Avenue", "Church Lane", "Mill Road",
           "Elm Street", "Harbour Way", "King Street", "Queen Avenue", "Market Square", "River Road"]
BIOS = ["Loves a good bargain.", "Buys gifts for the whole family.", "Early adopter of gadgets.",
        "Reads two books a week.", "Weekend cyclist and camper.", "Collects board games."]
# Nested dict = subcategories, list = a leaf with the product nouns sold in it. The same names
# under different parents (Shirts, Shoes, Cooking) show that only siblings must differ.
CATEGORY_TREE: dict[str, Any] = {
    "Electronics": {
        "Computers": {"Laptops": ["Laptop", "Ultrabook"], "Monitors": ["Monitor", "Display"],
                      "Keyboards": ["Keyboard", "Keypad"]},
        "Audio": {"Headphones": ["Headphones", "Earbuds"], "Speakers": ["Speaker", "Soundbar"]},
        "Phones": ["Smartphone", "Phone Case", "Charger"],
    },
    "Home & Kitchen": {
        "Cookware": ["Pan", "Pot", "Kettle"],
        "Furniture": {"Chairs": ["Chair", "Stool"], "Desks": ["Desk", "Standing Desk"]},
        "Lighting": ["Lamp", "Light Strip"],
    },
    "Books": {"Fiction": ["Novel", "Short Stories"], "Science": ["Textbook", "Field Guide"],
              "Cooking": ["Cookbook"]},
    "Sports": {"Running": ["Running Shoes", "Sports Watch"], "Cycling": ["Bike Helmet", "Bike Light"],
               "Camping": ["Tent", "Sleeping Bag", "Lantern"]},
    "Toys": {"Board Games": ["Board Game", "Card Game"], "Puzzles": ["Puzzle", "Brain Teaser"]},
    "Clothing": {"Men": {"Shirts": ["Shirt", "Polo"], "Shoes": ["Sneakers", "Boots"]},
                 "Women": {"Shirts": ["Blouse", "Shirt"], "Shoes": ["Sneakers", "Sandals"]},
                 "Cooking": ["Apron"]},
    "Sale": [],  # products are linked here in addition to their own category (many-to-many)
}
ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Essential", "Ultra", "Smart", "Pro", "Lite",
              "Vintage", "Rugged", "Premium", "Everyday", "Travel", "Wireless", "Modern"]
ORDER_STATUS_OLD = (("delivered", 80), ("cancelled", 8), ("refunded", 5), ("shipped", 4), ("paid", 3))
ORDER_STATUS_NEW = (("pending", 20), ("paid", 30), ("shipped", 30), ("delivered", 12), ("cancelled", 8))
PAYMENT_METHODS = (("card", 60), ("paypal", 20), ("bank_transfer", 8), ("gift_card", 7),
                   ("cash_on_delivery", 5))
EVENT_TYPES = (("page_view", 40), ("product_view", 25), ("search", 10), ("add_to_cart", 8),
               ("login", 7), ("checkout", 3), ("logout", 3), ("remove_from_cart", 2), ("review", 2))
PAGES = ["/", "/deals", "/account", "/cart", "/help", "/categories", "/orders", "/wishlist"]
SEARCHES = ["laptop", "headphones", "tent", "novel", "desk", "shoes", "puzzle", "kettle", "gift"]


def _table(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    """Values and cumulative weights for ``Random.choices``."""
    return [p[0] for p in pairs], list(itertools.accumulate(p[1] for p in pairs))


def _pick(rng: random.Random, values: Sequence[T], cum_weights: list[int] | list[float]) -> T:
    """One weighted choice; what ``rng.choices(values, cum_weights=...)[0]`` does, without its overhead."""
    return values[bisect.bisect(cum_weights, rng.random() * cum_weights[-1], 0, len(values) - 1)]


@dataclass
class Chunk:
    table: str
    columns: tuple[str, ...]
    lines: list[str]  # COPY text format, each ending in a newline
    done: tuple[str, int, int] | None = None  # (phase, done, total) once this chunk is loaded


# ---- PostgreSQL rows ---------------------------------------------------------------------------

class SampleData:
    """Generates the PostgreSQL rows in dependency order, chunk by chunk, from one RNG."""

    def __init__(self, rng: random.Random, base: dt.datetime, users: int, products: int, orders: int) -> None:
        self.rng = rng
        self.base = int(base.timestamp())
        self.n_users, self.n_products, self.n_orders = users, products, orders
        # kept per user/product because orders and events refer back to them
        self.user_created: list[int] = []
        self.user_name: list[str] = []
        self.user_tier: list[str] = []
        self.user_ship: list[int] = []  # default shipping address id
        self.price_cents: list[int] = []
        self.counts = dict.fromkeys(PG_TABLES, 0)
        self.categories = 0

    # timestamps are whole seconds since the epoch, formatted once for COPY
    @staticmethod
    def ts(seconds: int) -> str:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(" ")  # isoformat is C, strftime is slow

    def chunks(self) -> Iterator[Chunk]:
        yield from self._users()
        yield from self._catalog()
        yield from self._orders()

    def _emit(self, table: str, columns: tuple[str, ...], lines: list[str],
              done: tuple[str, int, int] | None = None) -> Chunk:
        self.counts[table] += len(lines)
        return Chunk(table, columns, lines, done)

    # -- users, profiles, addresses
    def _users(self) -> Iterator[Chunk]:
        rng, base = self.rng, self.base
        tiers, tier_cw = _table(TIERS)
        address_id = 0
        for start in range(1, self.n_users + 1, CHUNK):
            users, profiles, addresses = [], [], []
            for uid in range(start, min(start + CHUNK, self.n_users + 1)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                name = f"{first} {last}"
                email = f"{first.lower()}.{last.lower().replace(' ', '')}{uid}@example.com"
                tier = _pick(rng, tiers, tier_cw)
                created = base - rng.randint(30 * DAY, 3 * 365 * DAY)
                self.user_created.append(created)
                self.user_name.append(name)
                self.user_tier.append(tier)
                users.append(f"{uid}\t{email}\t{name}\t{tier}\t{self.ts(created)}\n")
                if rng.random() < 0.8:  # the 1:1 profile is optional
                    dob = f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                    bio = rng.choice(BIOS) if rng.random() < 0.5 else NULL
                    opt_in = "t" if rng.random() < 0.35 else "f"
                    updated = created + rng.randint(0, 20 * DAY)
                    profiles.append(f"{uid}\t+1 555 {rng.randint(0, 9999999):07d}\t{dob}\t{bio}\t{opt_in}"
                                    f"\t{self.ts(updated)}\n")
                city, country, postal = rng.choice(CITIES)
                kinds = ["shipping"] + (["billing"] if rng.random() < 0.5 else []) \
                    + (["shipping"] if rng.random() < 0.2 else [])
                for i, kind in enumerate(kinds):
                    address_id += 1
                    if i == 0:
                        self.user_ship.append(address_id)
                    default = kind not in kinds[:i]  # at most one default per kind
                    if not default:  # a second shipping address elsewhere
                        city, country, postal = rng.choice(CITIES)
                    line2 = f"Apt {rng.randint(1, 99)}" if rng.random() < 0.3 else NULL
                    addresses.append(
                        f"{address_id}\t{uid}\t{kind}\t{rng.randint(1, 250)} {rng.choice(STREETS)}\t{line2}"
                        f"\t{city}\t{self._postal(postal)}\t{country}\t{'t' if default else 'f'}"
                        f"\t{self.ts(created)}\n")
            yield self._emit("users", ("user_id", "email", "name", "tier", "created_at"), users)
            yield self._emit("user_profiles", ("user_id", "phone", "date_of_birth", "bio", "marketing_opt_in",
                                               "updated_at"), profiles)
            yield self._emit("addresses", ("address_id", "user_id", "kind", "line1", "line2", "city",
                                           "postal_code", "country", "is_default", "created_at"), addresses,
                             ("users", len(self.user_created), self.n_users))

    def _postal(self, pattern: str | None) -> str:
        if pattern is None:
            return NULL
        rng = self.rng
        return "".join(str(rng.randint(0, 9)) if c == "#" else chr(65 + rng.randint(0, 25)) if c == "A" else c
                       for c in pattern)

    # -- categories, products, links
    def _catalog(self) -> Iterator[Chunk]:
        rng, base = self.rng, self.base
        cats: list[str] = []
        leaves: list[tuple[int, list[str]]] = []
        top: dict[str, int] = {}

        def walk(tree: dict[str, Any], parent: int | None) -> None:
            for name, sub in tree.items():
                cats.append(f"{len(cats) + 1}\t{name}\t{parent or NULL}\n")
                cid = len(cats)
                if parent is None:
                    top[name] = cid
                if isinstance(sub, dict):
                    walk(sub, cid)
                elif sub:
                    leaves.append((cid, sub))

        walk(CATEGORY_TREE, None)
        sale_id = top["Sale"]
        self.categories = len(cats)
        yield self._emit("categories", ("category_id", "name", "parent_id"), cats)
        for start in range(1, self.n_products + 1, CHUNK):
            products, links = [], []
            for pid in range(start, min(start + CHUNK, self.n_products + 1)):
                cid, nouns = rng.choice(leaves)
                adjective, noun = rng.choice(ADJECTIVES), rng.choice(nouns)
                cents = max(199, min(500000, round(rng.lognormvariate(3.2, 0.9) * 100)))
                self.price_cents.append(cents)
                stock = 0 if rng.random() < 0.05 else rng.randint(1, 500)
                active = "f" if rng.random() < 0.05 else "t"
                desc = f"{adjective} {noun.lower()} for everyday use." if rng.random() < 0.7 else NULL
                created = base - rng.randint(60 * DAY, 3 * 365 * DAY)
                products.append(f"{pid}\tSKU-{pid:07d}\t{adjective} {noun} {rng.randint(100, 999)}\t{desc}"
                                f"\t{_money(cents)}\t{stock}\t{active}\t{self.ts(created)}\n")
                links.append(f"{pid}\t{cid}\n")
                if rng.random() < 0.15:
                    links.append(f"{pid}\t{sale_id}\n")
            yield self._emit("products", ("product_id", "sku", "product_name", "description", "price", "stock",
                                          "active", "created_at"), products)
            yield self._emit("product_categories", ("product_id", "category_id"), links,
                             ("catalog", len(self.price_cents), self.n_products))

    # -- orders, order items, payments
    def _orders(self) -> Iterator[Chunk]:
        if not self.n_orders:
            return
        rng, base = self.rng, self.base
        # a few customers order a lot and a few products sell a lot (log-normal weights: the top
        # customer orders some 20-30 times the average, not half of all orders)
        user_cw = list(itertools.accumulate(rng.lognormvariate(0, 1.0) for _ in range(self.n_users)))
        product_cw = list(itertools.accumulate(rng.lognormvariate(0, 1.2) for _ in range(self.n_products)))
        old_status, old_cw = _table(ORDER_STATUS_OLD)
        new_status, new_cw = _table(ORDER_STATUS_NEW)
        methods, method_cw = _table(PAYMENT_METHODS)
        products = range(self.n_products)
        payment_id = 0
        for start in range(1, self.n_orders + 1, CHUNK):
            end = min(start + CHUNK, self.n_orders + 1)
            buyers = rng.choices(range(self.n_users), cum_weights=user_cw, k=end - start)
            orders, items, payments = [], [], []
            for oid, u in zip(range(start, end), buyers, strict=True):
                created = self.user_created[u]
                # ends 2 h before the base date, so even a retried payment lies before it
                when = created + int(rng.random() * (base - 7200 - created))
                recent = base - when < 30 * DAY
                status = _pick(rng, new_status, new_cw) if recent \
                    else _pick(rng, old_status, old_cw)
                ship = NULL if status == "pending" and rng.random() < 0.3 else str(self.user_ship[u])
                orders.append(f"{oid}\t{u + 1}\t{self.ts(when)}\t{status}\t{ship}\n")
                total = 0
                picked = rng.choices(products, cum_weights=product_cw, k=rng.choice((1, 1, 1, 2, 2, 3, 4, 5)))
                for p in dict.fromkeys(picked):  # one line per product, in first-picked order
                    qty = rng.choice((1, 1, 1, 1, 1, 1, 2, 2, 3, 4))
                    cents = self.price_cents[p]  # unit_price: the price at purchase
                    total += qty * cents
                    items.append(f"{oid}\t{p + 1}\t{qty}\t{_money(cents)}\n")
                for pay_status, method, at, paid in self._payments(status, when, methods, method_cw):
                    payment_id += 1
                    payments.append(f"{payment_id}\t{oid}\t{_money(total)}\t{method}\t{pay_status}"
                                    f"\t{self.ts(paid) if paid else NULL}\t{self.ts(at)}\n")
            yield self._emit("orders", ("order_id", "user_id", "order_date", "status", "shipping_address_id"),
                             orders)
            yield self._emit("order_items", ("order_id", "product_id", "quantity", "unit_price"), items)
            yield self._emit("payments", ("payment_id", "order_id", "amount", "method", "status", "paid_at",
                                          "created_at"), payments, ("orders", end - 1, self.n_orders))

    def _payments(self, status: str, when: int, methods: list[str],
                  method_cw: list[int]) -> list[tuple[str, str, int, int | None]]:
        """(status, method, created_at, paid_at) of an order's payments, oldest first."""
        rng = self.rng
        method = _pick(rng, methods, method_cw)
        at = when + rng.randint(5, 600)
        if status == "pending":
            return [("pending", method, at, None)] if rng.random() < 0.5 else []
        if status == "cancelled":
            return [("failed", method, at, None)] if rng.random() < 0.3 else []
        out: list[tuple[str, str, int, int | None]] = []
        if rng.random() < 0.08:  # a declined attempt, then a successful one
            out.append(("failed", method, at, None))
            at += rng.randint(60, 3600)
            method = _pick(rng, methods, method_cw)
        out.append(("refunded" if status == "refunded" else "completed", method, at, at + rng.randint(1, 30)))
        return out


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ---- activity documents ------------------------------------------------------------------------

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
        types, type_cw = _table(EVENT_TYPES)
        step = (self.end_ms - self.start_ms) / self.n if self.n else 0
        users = range(pg.n_users)
        for i in range(self.n):
            # strictly ordered timestamps, jittered within their slot, in whole milliseconds
            ms = self.start_ms + int((i + rng.random()) * step)
            ts = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
            u = _pick(rng, users, user_cw)
            kind = _pick(rng, types, type_cw)
            yield {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "user_id": u + 1,
                "type": kind,
                "timestamp": ts,
                "day": ts.strftime("%Y-%m-%d"),
                "hour": ts.strftime("%Y-%m-%dT%H"),
                "data": self._data(kind),
                "user": {"name": pg.user_name[u], "tier": pg.user_tier[u]},
            }

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
        key = kind.replace(".", "\uff0e")  # counts keys cannot contain '.'; seed types never do
        st["counts"][key] = st["counts"].get(key, 0) + 1
        closed: list[dict[str, Any]] = []
        if event["hour"] != self.open_hour:
            closed = self.flush_buckets()
            self.open_hour = event["hour"]
        buckets = self.open_buckets.setdefault(uid, [])
        if not buckets or buckets[-1]["count"] >= self.bucket_size:
            buckets.append({"user_id": uid, "hour": event["hour"], "seq": len(buckets), "count": 0, "events": []})
        bucket = buckets[-1]
        bucket["count"] += 1
        bucket["events"].append({"event_id": event["event_id"], "type": kind, "ts": ts})
        return closed

    def flush_buckets(self) -> list[dict[str, Any]]:
        out = [b for buckets in self.open_buckets.values() for b in buckets]
        self.open_buckets = {}
        return out


# ---- the load ----------------------------------------------------------------------------------

def seed(cfg: Config, *, users: int = DEFAULTS["users"], products: int = DEFAULTS["products"],
         orders: int = DEFAULTS["orders"], events: int | None = None, seed: int = 1,
         base_date: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, int]:
    """Fill an empty schema with sample data; returns rows/documents written per table/collection.

    ``events=None`` means the default when a MongoDB is configured and none otherwise.
    """
    from dbcli.encryption.fields import Encryptor
    from dbcli.postgres import connection as postgres

    if events is None:
        events = DEFAULTS["events"] if cfg.mongo.configured else 0
    _check_sizes(cfg, users, products, orders, events)
    base = (base_date or BASE_DATE).astimezone(dt.UTC)
    report = progress or (lambda _phase, _done, _total: None)
    rng = random.Random(seed)
    data = SampleData(rng, base, users, products, orders)
    enc = Encryptor.from_config(cfg)  # configured columns and fields are stored encrypted, as on any write

    conn = postgres.connect(cfg, autocommit=True)
    try:
        with postgres.errors_translated(cfg), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            _refuse_if_not_empty_pg(conn)
            mdb, client = _mongo_target(cfg, events)
            try:
                for chunk in _prefetch(data.chunks()):
                    _copy(conn, chunk, enc)
                    if chunk.done:  # reported from here, after the load, not when generated
                        report(*chunk.done)
                _advance_sequences(conn, data)
                counts = dict(data.counts)
                if mdb is not None:
                    # written while the PostgreSQL transaction is still open: if MongoDB fails,
                    # the tables roll back and nothing refers to half-written events
                    try:
                        counts.update(_load_activity(cfg, mdb, ActivityData(rng, base, data, events,
                                                                            _bucket_size(cfg)), report, enc))
                    except DbcliError as e:
                        e.hint = e.hint or ("the PostgreSQL rows were rolled back; documents already inserted "
                                            "stay in MongoDB: empty its collections before seeding again")
                        raise
            finally:
                if client is not None:
                    client.close()
        return counts
    finally:
        conn.close()


def _check_sizes(cfg: Config, users: int, products: int, orders: int, events: int) -> None:
    for name, value in (("users", users), ("products", products), ("orders", orders), ("events", events)):
        if value < 0:
            raise UsageError(f"--{name} must be 0 or more, got {value}")
    if orders and not (users and products):
        raise UsageError("orders need at least one user and one product")
    if events and not users:
        raise UsageError("events need at least one user")
    if events and not cfg.mongo.configured:
        raise ConfigError("activity events need a MongoDB, and none is configured",
                          hint="set mongo.uri or mongo.embedded: true, or pass --events 0")


def _bucket_size(cfg: Config) -> int:
    size = cfg.get("activity.bucket_size") or MAX_BUCKET
    if not 1 <= int(size) <= MAX_BUCKET:
        raise ConfigError(f"activity.bucket_size must be between 1 and {MAX_BUCKET}, got {size}")
    return int(size)


def _refuse_if_not_empty_pg(conn: psycopg.Connection) -> None:
    from psycopg import sql

    missing = [t for t in PG_TABLES
               if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]  # type: ignore[index]
    if missing:
        raise InvalidInputError(f"table {missing[0]} does not exist: the schema is not applied",
                                hint="run dbcli schema apply first")
    for t in PG_TABLES:
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t))).fetchone()[0]:  # type: ignore[index]
            raise ConflictError(f"table {t} already holds rows: seed fills an empty schema only",
                                hint="seed a fresh database, or empty the tables first")


def _mongo_target(cfg: Config, events: int) -> tuple[Any, Any]:
    """(database, client) when events are wanted, after checking the collections are empty."""
    if not events:
        return None, None
    from dbcli.mongo import connection as mongo

    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            for name in COLLECTIONS:
                if db[name].find_one({}, {"_id": 1}) is not None:
                    raise ConflictError(f"collection {name} already holds documents: seed fills empty "
                                        "collections only", hint="seed a fresh database, or empty it first")
    except BaseException:
        client.close()
        raise
    return db, client


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _prefetch(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Run ``items`` in a thread, ``depth`` ahead of the consumer.

    Generating rows is Python work and a COPY mostly waits for the server (psycopg releases the GIL
    while it waits), so the two overlap. There is one producer, so the order, and with it the
    data, stays deterministic.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Failed(e))

    worker = threading.Thread(target=produce, name="dbcli-seed-rows", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def _copy(conn: psycopg.Connection, chunk: Chunk, enc: Encryptor | None = None) -> None:
    from psycopg import sql

    if not chunk.lines:
        return
    lines = chunk.lines
    if enc is not None and enc.columns_for(chunk.table):
        lines = _encrypt_lines(enc, chunk)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(chunk.table), sql.SQL(", ").join(sql.Identifier(c) for c in chunk.columns))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write("".join(lines))


def _encrypt_lines(enc: Encryptor, chunk: Chunk) -> list[str]:
    """The chunk's COPY lines with its encrypted columns replaced by tokens.

    Seed values need no COPY escaping (see the vocabulary test), so a field is its text as it is;
    tokens are base64url and need none either. Without the key this raises ConfigError (exit 3).
    """
    cols = enc.columns_for(chunk.table)
    at = [(i, name) for i, name in enumerate(chunk.columns) if name in cols]
    out = []
    for line in chunk.lines:
        values = line[:-1].split("\t")
        for i, name in at:
            if values[i] != NULL:
                values[i] = enc.encrypt_value("table", chunk.table, name, values[i])
        out.append("\t".join(values) + "\n")
    return out


def _advance_sequences(conn: psycopg.Connection, data: SampleData) -> None:
    """Identity sequences continue after the ids the seed supplied."""
    last = {"users": data.n_users, "addresses": data.counts["addresses"], "categories": data.categories,
            "products": data.n_products, "orders": data.n_orders, "payments": data.counts["payments"]}
    for table, column in IDENTITY.items():
        n = last[table]
        conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
                     (table, column, max(n, 1), n > 0))


def _load_activity(cfg: Config, db: Any, act: ActivityData, report: Progress,
                   enc: Encryptor | None = None) -> dict[str, int]:
    from pymongo.errors import BulkWriteError

    from dbcli.mongo import connection as mongo
    from dbcli.schema import files as schema_files

    specs = schema_files.collection_specs(cfg)
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
            raise _bulk_error(name, e) from e
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


def _bulk_error(collection: str, e: Any) -> DbcliError:
    """The first write error of an insert_many, as one line with the right exit code."""
    from dbcli.config.load import redact_text

    first = (e.details.get("writeErrors") or [{}])[0]
    text = redact_text(str(first.get("errmsg") or e)).splitlines()[0][:300]
    if first.get("code") == 11000:
        return ConflictError(f"duplicate key in {collection}: {text}")
    if first.get("code") == 121:
        return InvalidInputError(f"document failed validation in {collection}: {text}")
    return DbcliError(f"MongoDB error in {collection}: {text}")


# ---- helpers for the CLI and the demo ----------------------------------------------------------

def has_data(cfg: Config) -> bool:
    """Whether the users table exists and holds rows."""
    from dbcli.postgres import connection as postgres

    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        row = conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return False
        return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()[0])  # type: ignore[index]


def summary_rows(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"target": "mongo" if name in COLLECTIONS else "postgres", "name": name, "rows": n}
            for name, n in counts.items()]


def _mongo_empty(cfg: Config) -> bool:
    from dbcli.mongo import connection as mongo

    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = mongo.database(cfg, client)
            return all(db[name].find_one({}, {"_id": 1}) is None for name in COLLECTIONS)
    finally:
        client.close()


def demo_step(cfg: Config, out: Output) -> None:
    """Apply the schema to the embedded default and seed a small data set (once: reruns skip it)."""
    from dbcli.schema import apply as schema

    result = schema.apply(cfg, notify=out.info)
    if result.validators_supported is False:
        out.info(schema.VALIDATORS_NOTE)
    out.info(f"schema: {len(result.applied)} migration(s) applied, {len(result.mongo_changes)} MongoDB "
             "change(s)" if result.changed_anything else "schema: up to date")
    if has_data(cfg):
        out.info("sample data already present: not seeding again")
        return
    events = 2000 if cfg.mongo.configured and _mongo_empty(cfg) else 0
    counts = seed(cfg, users=100, products=40, orders=500, events=events, seed=1)
    out.info("seeded (dbcli seed --users 100 --products 40 --orders 500 --seed 1):")
    out.rows(summary_rows(counts), SUMMARY_COLUMNS, title="Sample data")
