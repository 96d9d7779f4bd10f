"""Benchmark: activity writes and upsert imports, dbcli against raw pymongo on the same server, same run.

Starts its own embedded PostgreSQL (the shop schema) and a MongoDB-wire server (``--engine``:
FerretDB 1.24 on SQLite, the default; ``ferretdb1-postgres``; ``ferretdb2``, FerretDB 2.7 +
DocumentDB from scripts/build-ferretdb2; or ``--uri`` of a running server) on a scratch directory,
then measures three things:

1. ``dbcli activity ingest`` of ``--events`` events (``--users`` users over ``--hours`` hours, in
   time order) against an in-process pymongo script doing the same writes with the same batches:
   parse, derive the event id, ``insert_many`` of the events, and the counters and hourly buckets
   written the way the server takes them best (what dbcli does, without validation, journal or
   recovery): on FerretDB 1.x one read of the counters and open buckets a batch touches, then
   ``delete_many`` + ``insert_many`` of their new versions; elsewhere unordered bulks of one
   ``$inc``/``$min``/``$max`` update per user and one ``$push`` per bucket; new buckets get the
   same ``_id`` derived from (user_id, hour, seq) as dbcli's. Both end with identical counters and
   buckets (checked). Goal: dbcli >= 0.9x raw.
2. crash recovery: ``activity ingest`` of ``--recovery-events`` events over ``--recovery-users``
   users killed (SIGKILL) mid-run, then the time the next writer takes to finish the dead batch.
   Goal: < 5 s for 10,000 users.
3. ``collection import --upsert-key`` of ``--import-docs`` documents into a collection that holds
   ``--import-base`` documents, against the same import into an empty collection. Goal: >= 0.8x.
   On FerretDB 1.24 every upsert statement reads the whole collection, so use small sizes there.

    .venv/bin/python bench/bench_activity.py --events 30000 --users 3000
    .venv/bin/python bench/bench_activity.py --engine ferretdb2 --events 100000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_collections import children_cpu, server_cpu  # noqa: E402

TYPES = ["login", "page.view", "search", "add_to_cart", "checkout"]
TIERS = ["standard", "silver", "gold", "platinum"]
CAP = 200


def write_events(path: Path, n: int, users: int, hours: int) -> None:
    rng = random.Random(1)
    start = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    step = hours * 3600 / n
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            ts = start + dt.timedelta(seconds=i * step + rng.random())
            fh.write(json.dumps({"user_id": rng.randint(1, users), "type": rng.choice(TYPES),
                                 "timestamp": ts.isoformat(), "data": {"path": f"/p/{i % 100}"}}) + "\n")


# ---- servers -----------------------------------------------------------------------------------

class Servers:
    """The embedded PostgreSQL and the MongoDB-wire server of the run."""

    def __init__(self, work: Path, engine: str, uri: str | None) -> None:
        self.work, self.engine = work, engine
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster: Any = None
        self.uri = uri or self._start_mongo()

    def _start_mongo(self) -> str:
        from dbcli.errors import UnreachableError
        from dbcli.mongo import pg_backend
        from dbcli.mongo.embedded import built_ferretdb, start_server

        data = self.work / "mongo"
        data.mkdir()
        binary = built_ferretdb() if self.engine != "ferretdb2" else None
        try:
            if self.engine in pg_backend.PG_ENGINES:
                root = pg_backend.ferretdb2_build() if self.engine == "ferretdb2" else None
                if self.engine == "ferretdb2":
                    if root is None:
                        sys.exit("FerretDB 2.7 is not built (scripts/build-ferretdb2)")
                    binary = str(root / "ferretdb")
                self.cluster = pg_backend.start_cluster(self.engine, pg_backend.backend_bin(self.engine, root),
                                                        data / "pg")
            if binary is None:
                sys.exit("no FerretDB binary (run scripts/build-ferretdb, or set DBCLI_FERRETDB)")
            self.proc, port = start_server(binary, self.engine if self.cluster else "ferretdb", data,
                                           cluster=self.cluster)
        except UnreachableError as e:
            sys.exit(f"{self.engine} did not start: {e}")
        return f"mongodb://127.0.0.1:{port}/"

    def start_postgres(self, users: int) -> str:
        import psycopg
        from psycopg.conninfo import make_conninfo

        from dbcli.config.load import load_config
        from dbcli.postgres import embedded as local_pg
        from dbcli.schema.files import migrations

        server = local_pg.ensure_running(self.work / "pg" / "data", "bench")
        dsn = make_conninfo("", **server.conninfo("bench"))
        with psycopg.connect(dsn) as conn:
            if conn.execute("SELECT to_regclass('users')").fetchone() == (None,):
                for m in migrations(load_config()):
                    conn.execute(m.sql.encode())
            have = conn.execute("SELECT coalesce(max(user_id), 0) FROM users").fetchone()[0]
            with conn.cursor().copy("COPY users (user_id, email, name, tier) FROM STDIN") as copy:
                for uid in range(have + 1, users + 1):
                    copy.write_row((uid, f"u{uid}@example.com", f"User {uid}", TIERS[uid % 4]))
            conn.execute("SELECT setval(pg_get_serial_sequence('users', 'user_id'), %s)", (max(users, have),))
        return dsn

    def cpu(self) -> float:
        """CPU seconds of the MongoDB-wire server so far (0 for --uri): FerretDB, and for a
        PostgreSQL backend its postmaster, live backends and the backends that have exited."""
        if self.proc is None:
            return 0.0
        total = server_cpu(self.proc.pid)
        if self.cluster is not None:
            pid_file = self.cluster.data_dir / "postmaster.pid"
            postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
            if postmaster is not None:
                fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # + children waited for
                for task in Path(f"/proc/{postmaster}/task").iterdir():
                    for child in (task / "children").read_text().split():
                        # one that exits meanwhile is counted in the postmaster's children time
                        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                            total += server_cpu(int(child))
        return total

    def stop(self) -> None:
        from dbcli.mongo import pg_backend
        from dbcli.postgres import embedded as local_pg

        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.cluster is not None:
            pg_backend.stop_cluster(self.cluster.bin_dir, self.cluster.data_dir)
        local_pg.stop(self.work / "pg" / "data")


def config_file(servers: Servers, dsn: str, database: str) -> Path:
    cfg = servers.work / f"{database}.yaml"
    cfg.write_text(json.dumps({"postgres": {"dsn": dsn}, "mongo": {"uri": servers.uri, "database": database}}))
    return cfg


def dbcli(cfg: Path, *args: str) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dbcli", "-c", str(cfg), *args, "-f", "json"],
                          capture_output=True, text=True, check=False, cwd=cfg.parent)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dbcli {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}")
    return elapsed, json.loads(proc.stdout)


# ---- 1. ingest: the raw script -----------------------------------------------------------------

def fold(docs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    per_user: dict[int, dict[str, Any]] = {}
    for d in docs:
        st = per_user.setdefault(d["user_id"], {"n": 0, "counts": defaultdict(int), "first": d["timestamp"],
                                                "last": d["timestamp"], "user": d["user"]})
        st["n"] += 1
        st["counts"][d["type"].replace(".", "\uff0e")] += 1
        st["first"], st["last"] = min(st["first"], d["timestamp"]), max(st["last"], d["timestamp"])
    return per_user


def summaries(docs: list[dict[str, Any]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    pending: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for d in sorted(docs, key=lambda d: (d["timestamp"], d["event_id"])):
        pending[(d["user_id"], d["hour"])].append({"event_id": d["event_id"], "type": d["type"], "ts": d["timestamp"]})
    return pending


def rewrite_writer(db: Any) -> Callable[[list[dict[str, Any]]], None]:
    """FerretDB 1.x: read what the batch touches once, delete the old versions, insert the new ones."""
    from concurrent.futures import ThreadPoolExecutor

    from bson import ObjectId

    pool = ThreadPoolExecutor(max_workers=1)

    def newest(pending: dict[tuple[int, str], list[Any]]) -> dict[tuple[int, str], dict[str, Any]]:
        out: dict[tuple[int, str], dict[str, Any]] = {}
        q = {"user_id": {"$in": sorted({u for u, _ in pending})}, "hour": {"$in": sorted({h for _, h in pending})}}
        for b in db.activity_buckets.find(q):
            pair = (b["user_id"], b["hour"])
            if pair in pending and (pair not in out or b["seq"] > out[pair]["seq"]):
                out[pair] = b
        return out

    def write(docs: list[dict[str, Any]]) -> None:
        db.user_activities.insert_many(docs, ordered=False)
        per_user, pending = fold(docs), summaries(docs)
        last_of = pool.submit(newest, pending)
        stats = {s["user_id"]: s for s in db.user_stats.find({"user_id": {"$in": list(per_user)}})}
        new_stats = []
        for uid, st in per_user.items():
            old = stats.get(uid) or {"_id": ObjectId(), "user_id": uid, "activity_count": 0, "counts": {},
                                     "first_activity": st["first"], "last_activity": st["last"]}
            counts = dict(old["counts"])
            for k, v in st["counts"].items():
                counts[k] = counts.get(k, 0) + v
            new_stats.append({**old, "activity_count": old["activity_count"] + st["n"], "counts": counts,
                              "first_activity": min(old["first_activity"], st["first"]),
                              "last_activity": max(old["last_activity"], st["last"]), "user": st["user"]})
        last, buckets, replaced = last_of.result(), [], []
        for pair, items in pending.items():
            b = last.get(pair)
            seq = -1 if b is None else b["seq"]
            if b is not None and b["count"] < CAP:
                k = CAP - b["count"]
                buckets.append({**b, "count": b["count"] + len(items[:k]), "events": b["events"] + items[:k]})
                replaced.append(b["_id"])
                items = items[k:]
            for i in range(0, len(items), CAP):
                seq += 1
                buckets.append({"_id": {"u": pair[0], "h": pair[1], "s": seq}, "user_id": pair[0], "hour": pair[1],
                                "seq": seq,
                                "count": len(items[i:i + CAP]), "events": items[i:i + CAP]})
        for coll, docs_, old_ids in ((db.activity_buckets, buckets, replaced),
                                     (db.user_stats, new_stats, [s["_id"] for s in stats.values()])):
            if old_ids:
                coll.delete_many({"_id": {"$in": old_ids}})
            if docs_:
                coll.insert_many(docs_, ordered=False)
    return write


def parts(items: list[Any], jobs: int, limit: int) -> list[list[Any]]:
    """``items`` cut as dbcli cuts them: at least ``jobs`` parts, none longer than ``limit``."""
    from dbcli.shop.activity.parallel import part_size

    size = part_size(len(items), jobs, limit)
    return [items[i:i + size] for i in range(0, len(items), size)]


def update_writer(db: Any, limit: int, jobs: int = 1) -> Callable[[list[dict[str, Any]]], None]:
    """Elsewhere: unordered bulks of one $inc update per user and one guarded $push per open bucket.

    With ``jobs`` > 1 each step's commands go over that many connections at once, as dbcli's: the
    events in parts, then the bucket updates and inserts, then the counter updates and inserts.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bson import ObjectId
    from pymongo import InsertOne, UpdateOne

    open_buckets: dict[tuple[int, str], Any] = {}
    stat_ids: dict[int, Any] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)

    def run(coll: Any, *op_lists: list[Any]) -> None:
        cmds = parts([op for ops in op_lists for op in ops], jobs, limit)
        for f in [pool.submit(coll.bulk_write, part, ordered=False) for part in cmds]:
            f.result()

    def insert(coll: Any, docs: list[dict[str, Any]]) -> None:
        for f in [pool.submit(coll.insert_many, part, ordered=False) for part in parts(docs, jobs, 20_000)]:
            f.result()

    def write(docs: list[dict[str, Any]]) -> None:
        insert(db.user_activities, docs)
        per_user, pending = fold(docs), summaries(docs)
        unseen = [p for p in pending if p not in open_buckets]
        if unseen:
            found: dict[tuple[int, str], Any] = {}
            q = {"user_id": {"$in": sorted({u for u, _ in unseen})}, "hour": {"$in": sorted({h for _, h in unseen})}}
            for b in db.activity_buckets.find(q, {"user_id": 1, "hour": 1, "seq": 1, "count": 1}).hint("hour"):
                pair = (b["user_id"], b["hour"])
                if pair not in found or b["seq"] > found[pair][0]:
                    found[pair] = (b["seq"], b["count"], b["_id"])
            for p in unseen:
                open_buckets[p] = found.get(p)
        updates, inserts = [], []
        for pair, items in pending.items():
            state = open_buckets.get(pair)
            if state is not None and state[1] < CAP:
                k = min(CAP - state[1], len(items))
                updates.append(UpdateOne({"_id": state[2], "count": {"$lte": CAP - k}},
                                         {"$push": {"events": {"$each": items[:k]}}, "$inc": {"count": k}}))
                state, items = (state[0], state[1] + k, state[2]), items[k:]
            while items:
                chunk, items = items[:CAP], items[CAP:]
                seq = state[0] + 1 if state else 0
                doc = {"_id": {"u": pair[0], "h": pair[1], "s": seq}, "user_id": pair[0], "hour": pair[1], "seq": seq,
                       "count": len(chunk), "events": chunk}
                inserts.append(doc)
                state = (seq, len(chunk), doc["_id"])
            open_buckets[pair] = state
        run(db.activity_buckets, updates, [InsertOne(d) for d in inserts])
        unknown = [u for u in per_user if u not in stat_ids]
        if unknown:
            for s in db.user_stats.find({"user_id": {"$in": unknown}}, {"user_id": 1}):
                stat_ids[s["user_id"]] = s["_id"]
        ups, new = [], []
        for uid, st in per_user.items():
            if uid in stat_ids:
                ups.append(UpdateOne({"_id": stat_ids[uid]}, {
                    "$inc": {"activity_count": st["n"], **{f"counts.{k}": v for k, v in st["counts"].items()}},
                    "$min": {"first_activity": st["first"]}, "$max": {"last_activity": st["last"]},
                    "$set": {"user": st["user"]}}))
            else:
                doc = {"_id": ObjectId(), "user_id": uid, "activity_count": st["n"], "counts": dict(st["counts"]),
                       "first_activity": st["first"], "last_activity": st["last"], "user": st["user"]}
                new.append(doc)
                stat_ids[uid] = doc["_id"]
        run(db.user_stats, ups, [InsertOne(d) for d in new])
    return write


def raw_ingest(uri: str, database: str, dsn: str, path: Path, batch_size: int, jobs: int = 1) -> float:
    import psycopg
    from pymongo import MongoClient

    from dbcli.mongo.bulk import is_ferretdb1, statement_limit

    start = time.perf_counter()
    client: Any = MongoClient(uri, tz_aware=True)
    db = client[database]
    # the same collections and indexes dbcli writes into (index upkeep is part of every insert)
    for spec_file in sorted((ROOT / "dbcli" / "shop" / "schema" / "mongo").glob("*.json")):
        spec = json.loads(spec_file.read_text())
        for ix in spec["indexes"]:
            db[spec["name"]].create_index([tuple(k) for k in ix["keys"]], name=ix["name"],
                                          unique=bool(ix.get("unique")))
    with psycopg.connect(dsn) as conn:
        refs = {u: {"name": n, "tier": t} for u, n, t in conn.execute("SELECT user_id, name, tier FROM users")}
    write = rewrite_writer(db) if is_ferretdb1(client) else update_writer(db, statement_limit(client), jobs)
    batch: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            e = json.loads(line)
            ts = dt.datetime.fromisoformat(e["timestamp"]).astimezone(dt.UTC)
            ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
            iso = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
            canonical = json.dumps({"user_id": e["user_id"], "type": e["type"], "timestamp": iso,
                                    "data": e.get("data")}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            batch.append({"event_id": hashlib.sha256(canonical.encode()).hexdigest(), "user_id": e["user_id"],
                          "type": e["type"], "timestamp": ts, "day": ts.strftime("%Y-%m-%d"),
                          "hour": ts.strftime("%Y-%m-%dT%H"), "data": e["data"], "user": refs[e["user_id"]]})
            if len(batch) >= batch_size:
                write(batch)
                batch = []
    if batch:
        write(batch)
    client.close()
    return time.perf_counter() - start


def same_result(uri: str, a: str, b: str) -> bool:
    """user_stats and bucket contents (ignoring _id) are identical in both databases."""
    from pymongo import MongoClient

    client: Any = MongoClient(uri, tz_aware=True)

    def snapshot(name: str) -> tuple[list[Any], list[Any]]:
        db = client[name]
        stats = sorted(json.dumps(d, sort_keys=True, default=str) for d in db.user_stats.find({}, {"_id": 0}))
        buckets = sorted(json.dumps(d, sort_keys=True, default=str) for d in db.activity_buckets.find({}, {"_id": 0}))
        return stats, buckets

    try:
        return snapshot(a) == snapshot(b)
    finally:
        client.close()


def bench_ingest(servers: Servers, dsn: str, args: argparse.Namespace) -> None:
    data = servers.work / "events.jsonl"
    write_events(data, args.events, args.users, args.hours)
    print(f"1. ingest: {args.events} events, {args.users} users over {args.hours} h, batch {args.batch_size}",
          flush=True)
    from dbcli.shop.activity.parallel import WRITE_JOBS

    # "raw" writes over as many connections as dbcli does (1 on FerretDB 1.x, where both write
    # serially anyway); "serial" is raw pymongo one command at a time, the second baseline
    best = {"raw": float("inf"), "serial": float("inf"), "dbcli": float("inf")}
    cpu: dict[str, list[float]] = {"raw": [], "serial": [], "dbcli": []}
    report: dict[str, Any] = {}
    for r in range(args.rounds):
        for side in (("dbcli", "serial", "raw") if r % 2 else ("raw", "serial", "dbcli")):
            s0 = servers.cpu()
            if side != "dbcli":
                c0 = time.process_time()
                took = raw_ingest(servers.uri, f"{side}{r}", dsn, data, args.batch_size,
                                  WRITE_JOBS if side == "raw" else 1)
                client_cpu = time.process_time() - c0
            else:
                c0 = children_cpu()
                took, report = dbcli(config_file(servers, dsn, f"dbcli{r}"), "activity", "ingest", str(data),
                                     "--batch-size", str(args.batch_size))
                client_cpu = children_cpu() - c0
            cpu[side].append(client_cpu + servers.cpu() - s0)
            best[side] = min(best[side], took)
            print(f"   round {r + 1}: {side:6} {took:7.2f} s ({cpu[side][-1]:.1f} cpu-s)", flush=True)
        if not (same_result(servers.uri, f"raw{r}", f"dbcli{r}") and same_result(servers.uri, f"raw{r}", f"serial{r}")):
            sys.exit("the raw script and dbcli ended with different counters or buckets")
    assert report.get("inserted") == args.events, report
    raw_rate, dbcli_rate = args.events / best["raw"], args.events / best["dbcli"]
    serial_rate = args.events / best["serial"]
    print(f"   raw pymongo, one command at a time: {best['serial']:7.2f} s  {serial_rate:8.0f} events/s")
    print(f"   raw pymongo, same writes      : {best['raw']:7.2f} s  {raw_rate:8.0f} events/s  "
          f"({WRITE_JOBS} connections at once, as dbcli)")
    print(f"   dbcli activity ingest         : {best['dbcli']:7.2f} s  {dbcli_rate:8.0f} events/s  "
          "(incl. start-up, validation pass, journal)")
    print(f"   throughput ratio dbcli/raw    : {dbcli_rate / raw_rate:.2f}x  (goal >= 0.90x); "
          f"dbcli/one-at-a-time raw {dbcli_rate / serial_rate:.2f}x")
    print(f"   cpu-seconds (client + server), best: raw {min(cpu['raw']):.1f}, one-at-a-time "
          f"{min(cpu['serial']):.1f}, dbcli {min(cpu['dbcli']):.1f} "
          f"-> ratio {min(cpu['raw']) / min(cpu['dbcli']):.2f}x; counters and buckets identical", flush=True)


# ---- 2. crash recovery -------------------------------------------------------------------------

def bench_recovery(servers: Servers, dsn: str, args: argparse.Namespace) -> None:
    from pymongo import MongoClient

    from dbcli.config.load import load_config
    from dbcli.shop.activity.recompute import recover
    from dbcli.shop.activity.session import open_session

    data = servers.work / "recovery.jsonl"
    write_events(data, args.recovery_events, args.recovery_users, args.hours)
    cfg = config_file(servers, dsn, "recovery")
    print(f"2. recovery: ingest of {args.recovery_events} events over {args.recovery_users} users, "
          f"batch {args.batch_size}, killed mid-run", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "-c", str(cfg), "activity", "ingest", str(data),
                             "--batch-size", str(args.batch_size), "-q"], cwd=servers.work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client: Any = MongoClient(servers.uri, tz_aware=True)
    db = client["recovery"]
    target = args.recovery_events * 0.4
    try:
        while db.user_activities.estimated_document_count() < target:
            if proc.poll() is not None:
                sys.exit("the ingest ended before it could be killed")
            time.sleep(0.05)
        # mid-batch: wait until a batch has its journal entry (its events are being written)
        while db.activity_journal.count_documents({}) == 0 and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(random.Random(2).uniform(0, 1.0))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    entries = list(db.activity_journal.find({}, {"users": 1, "plan": 1}))
    stored = db.user_activities.count_documents({})
    client.close()
    batch_users = sum(len(e.get("users") or []) for e in entries)
    planned = any("plan" in e for e in entries)
    config = load_config(str(cfg))
    start = time.perf_counter()
    with open_session(config) as session:
        opened = time.perf_counter()
        recovered = recover(session)
    took = time.perf_counter() - opened
    print(f"   killed with {stored} events stored, {len(entries)} journal entry ({batch_users} users, "
          f"plan recorded: {'yes' if planned else 'no'})")
    print(f"   recovery: {recovered} users in {took:.2f} s (+{opened - start:.2f} s to connect)  (goal < 5 s for "
          f"{args.recovery_users} users)", flush=True)
    dbcli(cfg, "activity", "ingest", str(data), "--batch-size", str(args.batch_size))
    stats = MongoClient(servers.uri, tz_aware=True)["recovery"].user_stats
    counted = sum(d["activity_count"] for d in stats.find({}, {"activity_count": 1}))
    stats.database.client.close()
    print(f"   rerun: counters total {counted} for {args.recovery_events} events "
          f"({'exact' if counted == args.recovery_events else 'WRONG'})", flush=True)


# ---- 3. upsert import into a big collection ----------------------------------------------------

def bench_upsert_import(servers: Servers, dsn: str, args: argparse.Namespace) -> None:
    from pymongo import MongoClient

    n, base = args.import_docs, args.import_base
    print(f"3. collection import --upsert-key: {n} documents into an empty collection and into one "
          f"holding {base}", flush=True)
    path = servers.work / "upserts.jsonl"
    with open(path, "w", encoding="utf-8") as fh:  # half new keys, half keys the big collection holds
        for i in range(n):
            key = base - n // 2 + i
            fh.write(json.dumps({"sku": f"k{key:09d}", "qty": i % 97, "note": "x" * 40}) + "\n")
    client: Any = MongoClient(servers.uri, tz_aware=True)
    results = {}
    for name, size in (("empty", 0), ("full", base)):
        db = client[f"imp_{name}"]
        db.items.create_index("sku", unique=True)
        for start in range(0, size, 20_000):
            db.items.insert_many([{"sku": f"k{k:09d}", "qty": 0, "note": "y" * 40}
                                  for k in range(start, min(size, start + 20_000))], ordered=False)
        cfg = config_file(servers, dsn, f"imp_{name}")
        took, report = dbcli(cfg, "collection", "import", "items", str(path), "--upsert-key", "sku")
        results[name] = took
        print(f"   into {name:5} ({size:>9} documents): {took:7.2f} s  {n / took:8.0f} documents/s  "
              f"(inserted {report['inserted']}, updated {report['updated']})", flush=True)
    client.close()
    print(f"   throughput ratio full/empty   : {results['empty'] / results['full']:.2f}x  (goal >= 0.80x)")


def server_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's argument parser with the server options (--engine, --uri) that Servers takes."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--engine", default="ferretdb1-sqlite",
                        choices=["ferretdb1-sqlite", "ferretdb1-postgres", "ferretdb2"])
    parser.add_argument("--uri", help="a running MongoDB-wire server instead of --engine")
    return parser


def main() -> None:
    parser = server_parser(__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events to ingest (default 100000)")
    parser.add_argument("--users", type=int, default=3000, help="distinct users (default 3000)")
    parser.add_argument("--hours", type=int, default=24, help="hours the events span (default 24)")
    parser.add_argument("--batch-size", type=int, default=5000, help="events per batch (default 5000)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the ingest (alternating which goes "
                        "first), keep the best of each")
    parser.add_argument("--recovery-users", type=int, default=10_000)
    parser.add_argument("--recovery-events", type=int, default=50_000)
    parser.add_argument("--import-docs", type=int, default=200_000)
    parser.add_argument("--import-base", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["ingest", "recovery", "import"], action="append",
                        help="run only these parts (repeatable)")
    args, _ = parser.parse_known_args()
    parts = args.only or ["ingest", "recovery", "import"]
    with tempfile.TemporaryDirectory(prefix="dbcli-bench-act-") as tmp:
        servers = Servers(Path(tmp), args.engine, args.uri)
        try:
            dsn = servers.start_postgres(max(args.users, args.recovery_users))
            print(f"server: {args.uri or args.engine} ({servers.uri}); load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
            if "ingest" in parts:
                bench_ingest(servers, dsn, args)
            if "recovery" in parts:
                bench_recovery(servers, dsn, args)
            if "import" in parts:
                bench_upsert_import(servers, dsn, args)
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
