"""What the row generators share: the RNG and sizes, what later tables refer back to, COPY chunks.

Timestamps are whole seconds since the epoch, offsets from a fixed base date (never ``now()``), and
every value is written in COPY text format. The vocabulary is plain ASCII without tabs, newlines or
backslashes, so no value needs COPY escaping.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

PG_TABLES = ("users", "user_profiles", "addresses", "categories", "products", "product_categories",
             "orders", "order_items", "payments")
CHUNK = 5000  # users, products or orders per COPY round
DAY = 86400
NULL = "\\N"  # COPY text format

T = TypeVar("T")


def weights(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    """Values and cumulative weights for ``pick``."""
    return [p[0] for p in pairs], list(itertools.accumulate(p[1] for p in pairs))


def pick(rng: random.Random, values: Sequence[T], cum_weights: list[int] | list[float]) -> T:
    """One weighted choice; what ``rng.choices(values, cum_weights=...)[0]`` does, without its overhead."""
    return values[bisect.bisect(cum_weights, rng.random() * cum_weights[-1], 0, len(values) - 1)]


def timestamp(seconds: int) -> str:
    """Seconds since the epoch as COPY text (isoformat is C code, strftime is slow)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(" ")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclass
class Chunk:
    table: str
    columns: tuple[str, ...]
    lines: list[str]  # COPY text format, each ending in a newline
    done: tuple[str, int, int] | None = None  # (phase, done, total) once this chunk is loaded


class SampleData:
    """The state of one generation: one RNG consumed in a fixed order, and what later rows refer to.

    Users, then the catalog, then orders are generated from it (``load.pg_chunks``); orders and
    activity events read back the per-user and per-product lists kept here.
    """

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
        self.lines_carry_user = False  # order_items and payments have user_id (the shop on Citus)
        self.categories = 0

    def emit(self, table: str, columns: tuple[str, ...], lines: list[str],
             done: tuple[str, int, int] | None = None) -> Chunk:
        self.counts[table] += len(lines)
        return Chunk(table, columns, lines, done)
