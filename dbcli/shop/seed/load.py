"""``dbcli seed``: the sample rows streamed into COPY in one transaction, then the activity events.

Same seed, same sizes, same base date: the same rows, byte for byte. Every random choice comes from
one ``random.Random(seed)`` consumed in a fixed order, and every timestamp is an offset from the base
date (today at 00:00 UTC unless one is given), never ``now()``. Identifiers are assigned by the seed
(1..N) and written with COPY, which may supply values for ``GENERATED ALWAYS`` identity columns;
the sequences are moved past them at the end, so later inserts by the application continue at N+1.

Rows are generated in chunks and streamed into COPY, so memory stays flat however many orders are
asked for; the whole PostgreSQL load is one transaction (all or nothing). Seed fills an empty schema
only: it refuses (exit 7) when any of its tables or collections already holds data, unless asked
to empty them first (``reset``).
"""

from __future__ import annotations

import datetime as dt
import queue
import random
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConfigError, ConflictError, DbcliError, InvalidInputError, UsageError
from dbcli.postgres import connection as postgres
from dbcli.postgres.errors import errors_translated
from dbcli.shop.activity.model import COLLECTIONS
from dbcli.shop.colocation import lines_carry_user
from dbcli.shop.seed.catalog import catalog_chunks
from dbcli.shop.seed.events import ActivityData, Progress, load_activity, mongo_target
from dbcli.shop.seed.orders import order_chunks
from dbcli.shop.seed.reset import empty_collections, empty_tables
from dbcli.shop.seed.rows import NULL, PG_TABLES, Chunk, SampleData
from dbcli.shop.seed.users import user_chunks

# a fixed base date for benchmarks; the command's default is today (see base_of_today)
BASE_DATE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DEFAULTS = {"users": 1000, "products": 200, "orders": 5000, "events": 10000}
IDENTITY = {"users": "user_id", "addresses": "address_id", "categories": "category_id",
            "products": "product_id", "orders": "order_id", "payments": "payment_id"}
SUMMARY_COLUMNS = ["target", "name", "rows"]
# A seed lock key distinct from schema apply's: two concurrent seeds cannot both see an empty database.
LOCK_KEY = int.from_bytes(b"dbcli-sd", "big")

T = TypeVar("T")


def pg_chunks(data: SampleData) -> Iterator[Chunk]:
    """Every PostgreSQL row, in dependency order: users, then the catalog, then orders."""
    yield from user_chunks(data)
    yield from catalog_chunks(data)
    yield from order_chunks(data)


def seed(cfg: Config, *, users: int = DEFAULTS["users"], products: int = DEFAULTS["products"],
         orders: int = DEFAULTS["orders"], events: int | None = None, seed: int = 1,
         base_date: dt.datetime | None = None, progress: Progress | None = None,
         reset: bool = False) -> dict[str, int]:
    """Fill an empty schema with sample data; returns rows/documents written per table/collection.

    ``events=None`` means the default when a MongoDB is configured and none otherwise;
    ``base_date=None`` means today (UTC midnight), so "the last 30 days" holds data; ``reset``
    empties the shop's tables and activity collections first.
    """
    if events is None:
        events = DEFAULTS["events"] if cfg.mongo.configured else 0
    _check_sizes(cfg, users, products, orders, events)
    base = (base_date or base_of_today()).astimezone(dt.UTC)
    report = progress or (lambda _phase, _done, _total: None)
    rng = random.Random(seed)
    data = SampleData(rng, base, users, products, orders)
    enc = Encryptor.from_config(cfg)  # configured columns and fields are stored encrypted, as on any write

    conn = postgres.connect(cfg, autocommit=True)
    try:
        with errors_translated(cfg), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            if reset:
                _refuse_if_schema_missing(conn)
                empty_tables(conn)
                empty_collections(cfg)
            _refuse_if_not_empty_pg(conn)
            data.lines_carry_user = lines_carry_user(conn)
            mdb, client = mongo_target(cfg, events)
            try:
                for chunk in _prefetch(pg_chunks(data)):
                    _copy(conn, chunk, enc)
                    if chunk.done:  # reported from here, after the load, not when generated
                        report(*chunk.done)
                _advance_sequences(conn, data)
                counts = dict(data.counts)
                if mdb is not None:
                    # written while the PostgreSQL transaction is still open: if MongoDB fails,
                    # the tables roll back and nothing refers to half-written events
                    try:
                        act = ActivityData(rng, base, data, events, cfg.activity.bucket_size)
                        counts.update(load_activity(cfg, mdb, act, report, enc))
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


def base_of_today() -> dt.datetime:
    """Today at 00:00 UTC: the default end of the data (runs on the same day give the same data)."""
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)


def _refuse_if_schema_missing(conn: psycopg.Connection) -> None:
    missing = [t for t in PG_TABLES
               if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]  # type: ignore[index]
    if missing:
        raise InvalidInputError(f"table {missing[0]} does not exist: the schema is not applied",
                                hint="run dbcli schema apply first")


def _refuse_if_not_empty_pg(conn: psycopg.Connection) -> None:
    _refuse_if_schema_missing(conn)
    for t in PG_TABLES:
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t))).fetchone()[0]:  # type: ignore[index]
            raise ConflictError(f"table {t} already holds rows: seed fills an empty schema only",
                                hint="seed a fresh database, or run dbcli seed --reset to empty them first")


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


def has_data(cfg: Config) -> bool:
    """Whether the users table exists and holds rows."""
    with postgres.connect(cfg, autocommit=True) as conn, errors_translated(cfg):
        row = conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return False
        return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()[0])  # type: ignore[index]


def summary_rows(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"target": "mongo" if name in COLLECTIONS else "postgres", "name": name, "rows": n}
            for name, n in counts.items()]
