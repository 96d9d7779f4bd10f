"""Benchmark: ``dbcli seed`` (COPY, bulk inserts) against row-by-row loading of the same data.

PostgreSQL: dbcli streams generated rows into COPY in one transaction. The baseline loads the very
same rows with psycopg ``executemany`` INSERTs (pipelined by psycopg 3, so already a strong
baseline), also in one transaction.

MongoDB (FerretDB, when its binary is available): dbcli inserts events, user_stats and
activity_buckets with ``insert_many``, the counters computed in memory. The baseline is what an
event-at-a-time ingester does: insert the event, upsert the user's counters, upsert the bucket.

Everything runs on scratch servers in a temporary directory (an embedded PostgreSQL and a FerretDB
process), removed at the end.

    /tmp/venv/bin/python bench/bench_seed.py [--orders 100000] [--events 20000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from dbcli.config.load import load_config
from dbcli.config.model import MAX_BUCKET_SIZE, Config
from dbcli.postgres import embedded as local_pg
from dbcli.schema import apply as schema
from dbcli.shop.activity.model import COLLECTIONS
from dbcli.shop.seed import load as seeding
from dbcli.shop.seed.events import ActivityData
from dbcli.shop.seed.rows import SampleData


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--products", type=int, default=1_000)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--baseline-orders", type=int, default=None,
                    help="orders for the INSERT baseline (default: same as --orders)")
    ap.add_argument("--events", type=int, default=20_000, help="activity events (0: skip MongoDB)")
    ap.add_argument("--baseline-events", type=int, default=1_000,
                    help="events for the event-at-a-time baseline (rates are compared per event)")
    args, _ = ap.parse_known_args()  # bench/run passes its arguments to every script

    tmp = Path(tempfile.mkdtemp(prefix="bench_seed_"))
    ferret: subprocess.Popen[bytes] | None = None
    try:
        server = local_pg.ensure_running(tmp / "pg" / "data", "postgres")
        cfg_a = _config(tmp, "a", server.conninfo("seed_dbcli"))
        cfg_b = _config(tmp, "b", server.conninfo("seed_baseline"))
        for name in ("seed_dbcli", "seed_baseline"):
            local_pg.ensure_running(tmp / "pg" / "data", name)
        for cfg in (cfg_a, cfg_b):
            schema.apply(cfg, target="postgres")
        print(f"PostgreSQL {local_pg.version(tmp / 'pg' / 'data')}: users={args.users} "
              f"products={args.products} orders={args.orders}")

        t = time.perf_counter()
        counts = seeding.seed(cfg_a, users=args.users, products=args.products, orders=args.orders, events=0)
        dbcli_s = time.perf_counter() - t
        rows = sum(counts.values())
        print(f"  dbcli seed (COPY):           {dbcli_s:7.2f} s  {rows:>9} rows  {rows / dbcli_s:>9.0f} rows/s"
              f"  ({counts['order_items']} order items)")

        b_orders = args.baseline_orders if args.baseline_orders is not None else args.orders
        t = time.perf_counter()
        b_rows = _insert_baseline(cfg_b, args.users, args.products, b_orders)
        base_s = time.perf_counter() - t
        print(f"  baseline (executemany):      {base_s:7.2f} s  {b_rows:>9} rows  {b_rows / base_s:>9.0f} rows/s")
        print(f"  ratio: COPY loads {(rows / dbcli_s) / (b_rows / base_s):.1f}x the rows per second")

        if args.events:
            ferret, uri = _start_ferretdb(tmp)
            if ferret is None:
                print("MongoDB part skipped: no FerretDB binary in ~/.cache/dbcli")
            else:
                _bench_events(tmp, server, uri, args)
    finally:
        if ferret is not None:
            ferret.terminate()
            ferret.wait(10)
        local_pg.stop(tmp / "pg" / "data")
        shutil.rmtree(tmp, ignore_errors=True)


def _config(tmp: Path, name: str, params: dict[str, str], mongo: dict[str, Any] | None = None) -> Config:
    from psycopg.conninfo import make_conninfo

    data: dict[str, Any] = {"postgres": {"dsn": make_conninfo("", **params)}}
    if mongo:
        data["mongo"] = mongo
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(str(path))


def _insert_baseline(cfg: Config, users: int, products: int, orders: int) -> int:
    """The same generated rows, loaded with executemany INSERT ... OVERRIDING SYSTEM VALUE."""
    from psycopg import sql

    from dbcli.postgres import connection as postgres

    data = SampleData(random.Random(1), seeding.BASE_DATE, users, products, orders)
    n = 0
    with postgres.connect(cfg) as conn, conn.cursor() as cur:
        for chunk in seeding.pg_chunks(data):
            if not chunk.lines:
                continue
            overriding = sql.SQL("OVERRIDING SYSTEM VALUE") if chunk.table in seeding.IDENTITY else sql.SQL("")
            stmt = sql.SQL("INSERT INTO {} ({}) {} VALUES ({})").format(
                sql.Identifier(chunk.table), sql.SQL(", ").join(map(sql.Identifier, chunk.columns)), overriding,
                sql.SQL(", ").join(sql.Placeholder() * len(chunk.columns)))
            cur.executemany(stmt, [[None if v == "\\N" else v for v in line[:-1].split("\t")]
                                   for line in chunk.lines])
            n += len(chunk.lines)
        conn.commit()
    return n


def _start_ferretdb(tmp: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    from dbcli.errors import UnreachableError
    from dbcli.mongo.embedded import built_ferretdb, start_server

    binary = built_ferretdb()
    if binary is None:
        return None, ""
    data = tmp / "ferretdb"
    data.mkdir()
    try:
        proc, port = start_server(binary, "ferretdb", data)
    except UnreachableError:
        return None, ""
    return proc, f"mongodb://127.0.0.1:{port}/"


def _bench_events(tmp: Path, server: local_pg.RunningServer, uri: str, args: argparse.Namespace) -> None:
    from pymongo import MongoClient

    local_pg.ensure_running(server.data_dir, "seed_events")
    cfg = _config(tmp, "e", server.conninfo("seed_events"), {"uri": uri, "database": "bench_dbcli"})
    schema.apply(cfg)
    users = min(args.users, 1000)
    t = time.perf_counter()
    counts = seeding.seed(cfg, users=users, products=args.products, orders=0, events=args.events)
    total_s = time.perf_counter() - t
    # the PostgreSQL part of that run, measured alone on a fresh database, is subtracted
    local_pg.ensure_running(server.data_dir, "seed_events2")
    cfg_pg = _config(tmp, "e2", server.conninfo("seed_events2"))
    schema.apply(cfg_pg)
    t = time.perf_counter()
    seeding.seed(cfg_pg, users=users, products=args.products, orders=0, events=0)
    mongo_s = max(1e-6, total_s - (time.perf_counter() - t))
    docs = sum(counts[c] for c in COLLECTIONS)
    print(f"FerretDB: {args.events} events from {users} users")
    print(f"  dbcli seed (insert_many):    {mongo_s:7.2f} s  {counts['user_activities']} events + "
          f"{counts['user_stats']} stats + {counts['activity_buckets']} buckets = {docs} docs  "
          f"{args.events / mongo_s:>8.0f} events/s")

    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    try:
        db = client["bench_baseline"]
        db["user_activities"].create_index("event_id", unique=True)
        db["user_stats"].create_index("user_id", unique=True)
        db["activity_buckets"].create_index([("user_id", 1), ("hour", 1), ("seq", 1)], unique=True)
        rng = random.Random(1)
        data = SampleData(rng, seeding.BASE_DATE, users, args.products, 0)
        for _ in seeding.pg_chunks(data):
            pass
        act = ActivityData(rng, seeding.BASE_DATE, data, args.baseline_events, MAX_BUCKET_SIZE)
        t = time.perf_counter()
        for ev in act.events():
            db["user_activities"].insert_one(ev)
            db["user_stats"].update_one({"user_id": ev["user_id"]}, {
                "$inc": {"activity_count": 1, f"counts.{ev['type']}": 1},
                "$min": {"first_activity": ev["timestamp"]}, "$max": {"last_activity": ev["timestamp"]},
                "$set": {"user": ev["user"]}}, upsert=True)
            db["activity_buckets"].update_one(
                {"user_id": ev["user_id"], "hour": ev["hour"], "seq": 0},
                {"$inc": {"count": 1}, "$push": {"events": {"event_id": ev["event_id"], "type": ev["type"],
                                                              "ts": ev["timestamp"]}}}, upsert=True)
        base_s = time.perf_counter() - t
        print(f"  baseline (per-event writes): {base_s:7.2f} s  {args.baseline_events} events  "
              f"{args.baseline_events / base_s:>8.0f} events/s")
        print(f"  ratio: bulk seeding is {(args.events / mongo_s) / (args.baseline_events / base_s):.1f}x "
              "faster per event")
    finally:
        client.close()


if __name__ == "__main__":
    main()
