"""Benchmark: ``dbcli activity ingest`` vs a raw pymongo script issuing the same bulk writes, same run.

Starts its own embedded PostgreSQL (the e-commerce schema, ``--users`` users) and FerretDB
(SQLite backend) on a scratch directory, writes a JSONL file of ``--events`` events in time order
(``--users`` users over ``--hours`` hours, five types), then ingests it into fresh databases:

* raw: an in-process pymongo script doing the same job with the same batches and the same writes:
  read a line, ``json.loads``, parse the timestamp, derive the event id (SHA-256 of the canonical
  event), extended reference from one PostgreSQL query; per batch ``insert_many(ordered=False)``
  of the events, one ``find`` of the open buckets, ``bulk_write`` of ``$push`` UpdateOnes by ``_id``
  plus ``insert_many`` of new buckets, one ``find`` of the user_stats ids, ``bulk_write`` of
  ``$inc``/``$min``/``$max`` UpdateOnes plus ``insert_many`` of new counters (update bulks in
  groups of 50, as dbcli sends them to FerretDB). No validation, no
  journal, no crash recovery, one pass over the input;
* dbcli: ``dbcli activity ingest FILE --batch-size N`` as a subprocess (start-up, the validation
  pass, the PostgreSQL check, the journal writes and the report included).

Both end with identical user_stats and bucket contents (checked). Prints throughputs, the ratio
(goal: dbcli >= 0.9x raw) and the CPU seconds of client + FerretDB, which a busy machine does not
distort.

    /tmp/venv/bin/python bench/bench_activity.py --events 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_collections import children_cpu, server_cpu, start_ferretdb  # noqa: E402

TYPES = ["login", "page.view", "search", "add_to_cart", "checkout"]
TIERS = ["standard", "silver", "gold", "platinum"]
CAP = 200
UPDATE_CHUNK = 50  # FerretDB v1.24 never answers an update command of 100 or more statements


def write_events(path: Path, n: int, users: int, hours: int) -> None:
    rng = random.Random(1)
    start = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    step = hours * 3600 / n
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            ts = start + dt.timedelta(seconds=i * step + rng.random())
            fh.write(json.dumps({"user_id": rng.randint(1, users), "type": rng.choice(TYPES),
                                 "timestamp": ts.isoformat(), "data": {"path": f"/p/{i % 100}"}}) + "\n")


def start_postgres(work: Path, users: int) -> str:
    import psycopg
    from psycopg.conninfo import make_conninfo

    from dbcli.config.load import load_config
    from dbcli.postgres import embedded as local_pg
    from dbcli.schema.files import migrations

    server = local_pg.ensure_running(work / "pg" / "data", "bench")
    dsn = make_conninfo("", **server.conninfo("bench"))
    with psycopg.connect(dsn) as conn:
        for m in migrations(load_config()):
            conn.execute(m.sql.encode())
        with conn.cursor().copy("COPY users (user_id, email, name, tier) FROM STDIN") as copy:
            for uid in range(1, users + 1):
                copy.write_row((uid, f"u{uid}@example.com", f"User {uid}", TIERS[uid % 4]))
        conn.execute("SELECT setval(pg_get_serial_sequence('users', 'user_id'), %s)", (users,))
    return dsn


# ---- the raw script ----------------------------------------------------------------------------

def raw_ingest(uri: str, database: str, dsn: str, path: Path, batch_size: int) -> float:
    import psycopg
    from bson import ObjectId
    from pymongo import MongoClient, UpdateOne

    start = time.perf_counter()
    client = MongoClient(uri, tz_aware=True)
    db = client[database]
    # the same collections and indexes dbcli writes into (index upkeep is part of every insert)
    for spec_file in sorted((ROOT / "dbcli" / "shop" / "schema" / "mongo").glob("*.json")):
        spec = json.loads(spec_file.read_text())
        for ix in spec["indexes"]:
            db[spec["name"]].create_index([tuple(k) for k in ix["keys"]], name=ix["name"],
                                          unique=bool(ix.get("unique")))
    with psycopg.connect(dsn) as conn:
        refs = {u: {"name": n, "tier": t} for u, n, t in conn.execute("SELECT user_id, name, tier FROM users")}
    open_buckets: dict[tuple[int, str], Any] = {}
    stat_ids: dict[int, Any] = {}

    def write(docs: list[dict[str, Any]]) -> None:
        db.user_activities.insert_many(docs, ordered=False)
        pending: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        for d in sorted(docs, key=lambda d: (d["timestamp"], d["event_id"])):
            pending[(d["user_id"], d["hour"])].append({"event_id": d["event_id"], "type": d["type"],
                                                       "ts": d["timestamp"]})
        unseen = [p for p in pending if p not in open_buckets]
        if unseen:
            found: dict[tuple[int, str], Any] = {}
            q = {"user_id": {"$in": sorted({u for u, _ in unseen})}, "hour": {"$in": sorted({h for _, h in unseen})}}
            for b in db.activity_buckets.find(q, {"user_id": 1, "hour": 1, "seq": 1, "count": 1}):
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
                # by _id only, as dbcli writes to FerretDB (a guard condition would decode every bucket)
                updates.append(UpdateOne({"_id": state[2]},
                                         {"$push": {"events": {"$each": items[:k]}}, "$inc": {"count": k}}))
                state, items = (state[0], state[1] + k, state[2]), items[k:]
            while items:
                chunk, items = items[:CAP], items[CAP:]
                seq = state[0] + 1 if state else 0
                doc = {"_id": ObjectId(), "user_id": pair[0], "hour": pair[1], "seq": seq, "count": len(chunk),
                       "events": chunk}
                inserts.append(doc)
                state = (seq, len(chunk), doc["_id"])
            open_buckets[pair] = state
        for i in range(0, len(updates), UPDATE_CHUNK):
            db.activity_buckets.bulk_write(updates[i:i + UPDATE_CHUNK], ordered=False)
        if inserts:
            db.activity_buckets.insert_many(inserts, ordered=False)
        per_user: dict[int, dict[str, Any]] = {}
        for d in docs:
            st = per_user.setdefault(d["user_id"], {"n": 0, "counts": defaultdict(int), "first": d["timestamp"],
                                                    "last": d["timestamp"]})
            st["n"] += 1
            st["counts"][d["type"].replace(".", "\uff0e")] += 1
            st["first"], st["last"] = min(st["first"], d["timestamp"]), max(st["last"], d["timestamp"])
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
                    "$set": {"user": refs[uid]}}))
            else:
                doc = {"_id": ObjectId(), "user_id": uid, "activity_count": st["n"], "counts": dict(st["counts"]),
                       "first_activity": st["first"], "last_activity": st["last"], "user": refs[uid]}
                new.append(doc)
                stat_ids[uid] = doc["_id"]
        for i in range(0, len(ups), UPDATE_CHUNK):
            db.user_stats.bulk_write(ups[i:i + UPDATE_CHUNK], ordered=False)
        if new:
            db.user_stats.insert_many(new, ordered=False)

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


def dbcli_ingest(uri: str, database: str, dsn: str, path: Path, batch_size: int, work: Path) -> tuple[float, dict]:
    cfg = work / f"{database}.yaml"
    cfg.write_text(json.dumps({"postgres": {"dsn": dsn}, "mongo": {"uri": uri, "database": database}}))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dbcli", "-c", str(cfg), "activity", "ingest", str(path),
                           "--batch-size", str(batch_size), "-f", "json"],
                          capture_output=True, text=True, check=False, cwd=work)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dbcli activity ingest failed ({proc.returncode}): {proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def same_result(uri: str, a: str, b: str) -> bool:
    """user_stats and bucket contents (ignoring _id) are identical in both databases."""
    from pymongo import MongoClient

    client = MongoClient(uri, tz_aware=True)

    def snapshot(name: str) -> tuple[list[Any], list[Any]]:
        db = client[name]
        stats = sorted(json.dumps(d, sort_keys=True, default=str) for d in db.user_stats.find({}, {"_id": 0}))
        buckets = sorted(json.dumps(d, sort_keys=True, default=str) for d in db.activity_buckets.find({}, {"_id": 0}))
        return stats, buckets

    try:
        return snapshot(a) == snapshot(b)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to ingest (default 100000)")
    parser.add_argument("--users", type=int, default=20, help="distinct users (default 20)")
    parser.add_argument("--hours", type=int, default=24, help="hours the events span (default 24)")
    parser.add_argument("--batch-size", type=int, default=5000, help="events per batch (default 5000)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both (alternating which goes first), "
                        "keep the best of each")
    args, _ = parser.parse_known_args()
    from dbcli.postgres import embedded as local_pg

    with tempfile.TemporaryDirectory(prefix="dbcli-bench-act-") as tmp:
        work = Path(tmp)
        proc, uri = start_ferretdb(work)
        try:
            dsn = start_postgres(work, args.users)
            data = work / "events.jsonl"
            write_events(data, args.events, args.users, args.hours)
            print(f"{args.events} events, {args.users} users over {args.hours} h, batch {args.batch_size}, "
                  f"FerretDB (SQLite) at {uri}", flush=True)
            best = {"raw": float("inf"), "dbcli": float("inf")}
            cpu: dict[str, list[float]] = {"raw": [], "dbcli": []}
            report: dict[str, Any] = {}
            for r in range(args.rounds):
                for side in (("dbcli", "raw") if r % 2 else ("raw", "dbcli")):
                    s0 = server_cpu(proc.pid)
                    if side == "raw":
                        c0 = time.process_time()
                        took = raw_ingest(uri, f"raw{r}", dsn, data, args.batch_size)
                        client_cpu = time.process_time() - c0
                    else:
                        c0 = children_cpu()
                        took, report = dbcli_ingest(uri, f"dbcli{r}", dsn, data, args.batch_size, work)
                        client_cpu = children_cpu() - c0
                    cpu[side].append(client_cpu + server_cpu(proc.pid) - s0)
                    best[side] = min(best[side], took)
                    print(f"  round {r + 1}: {side:5} {took:7.2f} s ({cpu[side][-1]:.1f} cpu-s)", flush=True)
                if not same_result(uri, f"raw{r}", f"dbcli{r}"):
                    sys.exit("the raw script and dbcli ended with different counters or buckets")
            assert report.get("inserted") == args.events, report
            raw_rate, dbcli_rate = args.events / best["raw"], args.events / best["dbcli"]
            print(f"raw pymongo, same bulk writes : {best['raw']:7.2f} s  {raw_rate:8.0f} events/s")
            print(f"dbcli activity ingest         : {best['dbcli']:7.2f} s  {dbcli_rate:8.0f} events/s  "
                  "(incl. start-up, validation pass, journal)")
            print(f"throughput ratio dbcli/raw    : {dbcli_rate / raw_rate:.2f}x  (goal >= 0.90x)")
            print(f"cpu-seconds (client + FerretDB), best: raw {min(cpu['raw']):.1f}, dbcli {min(cpu['dbcli']):.1f} "
                  f"-> ratio {min(cpu['raw']) / min(cpu['dbcli']):.2f}x  (load average now "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); counters and buckets identical")
        finally:
            proc.terminate()
            proc.wait(10)
            local_pg.stop(work / "pg" / "data")


if __name__ == "__main__":
    main()
