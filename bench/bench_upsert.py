"""Benchmark: `collection import --upsert-key` into a full collection against an empty one, same run.

Issue 19's goal: ``--docs`` documents (half new keys, half keys the collection holds) imported with
``--upsert-key sku`` into a collection that already holds ``--base`` documents (a unique index on
``sku``) within 0.8x of the throughput of the same import into an empty collection. Also times,
with ``--before``, the write pattern dbcli used until then (one unordered bulk of
``UpdateOne({sku: v}, {$set: doc}, upsert=True)`` a batch of 1,000, in commands of at most 40
statements on FerretDB 1.x, raw pymongo) into an empty and
a full collection of the same sizes: the baseline of the change.

The collections are loaded right before the imports (as after a restore or a first import): on
FerretDB 2.7 + DocumentDB that is when PostgreSQL has not analyzed the table yet, and an update
filtered on ``sku`` then walks the whole primary key. ``--analyze-wait S`` waits S seconds after
loading (autovacuum's analyze comes within about a minute) to measure the analyzed case too.

Starts its own MongoDB-wire server (``--engine``, as bench_activity.py) or uses ``--uri``:

    .venv/bin/python bench/bench_upsert.py --engine ferretdb2 --docs 20000 --base 100000 --before
    .venv/bin/python bench/bench_upsert.py --engine ferretdb2 --docs 200000 --base 1000000
    .venv/bin/python bench/bench_upsert.py --docs 200 --base 2000      # FerretDB 1.24: updates scan
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_activity import Servers, dbcli, server_parser  # the same server start and dbcli runner

from dbcli.mongo.bulk import bulk_write, statement_limit


def load(db: Any, size: int) -> None:
    db.items.create_index("sku", unique=True)
    for start in range(0, size, 20_000):
        db.items.insert_many([{"sku": f"k{k:09d}", "qty": 0, "note": "y" * 40}
                              for k in range(start, min(size, start + 20_000))], ordered=False)


def keyed_upserts(db: Any, path: Path) -> float:
    """The former write pattern, raw: a bulk of keyed upserts per 1,000 documents."""
    from pymongo import UpdateOne

    start = time.perf_counter()
    with open(path, encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    limit = statement_limit(db.client)  # FerretDB 1.x hangs on more (as dbcli did, at most 40 a command)
    for lo in range(0, len(docs), 1000):
        bulk_write(db.items, [UpdateOne({"sku": d["sku"]}, {"$set": d}, upsert=True) for d in docs[lo:lo + 1000]],
                   limit)
    return time.perf_counter() - start


def run(client: Any, uri: str, tmp: Path, path: Path, name: str, size: int, n: int, analyze_wait: float) -> float:
    """One import of ``path`` into a collection of ``size`` documents loaded right before; its seconds."""
    db = f"bench_upsert_{name}"
    client.drop_database(db)
    load(client[db], size)  # right before its import, as after a restore
    if analyze_wait:
        time.sleep(analyze_wait)
    if name.startswith("raw-"):
        took = keyed_upserts(client[db], path)
        detail = "raw pymongo keyed upserts, batches of 1000"
    else:
        cfg = tmp / f"{db}.yaml"
        cfg.write_text(json.dumps({"mongo": {"uri": uri, "database": db}}))
        took, report = dbcli(cfg, "collection", "import", "items", str(path), "--upsert-key", "sku")
        detail = f"inserted {report['inserted']}, updated {report['updated']}"
    assert client[db].items.count_documents({}) == (size + n - n // 2 if size else n)
    print(f"   into {name:9} ({size:>9} documents): {took:7.2f} s  {n / took:8.0f} "
          f"documents/s  ({detail})", flush=True)
    return took


def main() -> None:
    parser = server_parser(__doc__)
    parser.add_argument("--docs", type=int, default=20_000, help="documents imported (default 20000)")
    parser.add_argument("--base", type=int, default=100_000, help="documents already held (default 100000)")
    parser.add_argument("--before", action="store_true", help="also time the former keyed upserts (raw)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat, alternating which goes first; "
                        "keep the best of each")
    parser.add_argument("--analyze-wait", type=float, default=0.0, help="seconds to wait after loading")
    args = parser.parse_args()
    n, base = args.docs, args.base
    from pymongo import MongoClient

    with tempfile.TemporaryDirectory(prefix="dbcli-bench-upsert-") as tmp:
        servers = Servers(Path(tmp), args.engine, args.uri)
        try:
            print(f"server: {args.uri or args.engine}; load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores", flush=True)
            print(f"collection import --upsert-key: {n} documents into an empty collection and into one "
                  f"holding {base}", flush=True)
            path = Path(tmp) / "upserts.jsonl"
            with open(path, "w", encoding="utf-8") as fh:  # half new keys, half keys the full collection holds
                for i in range(n):
                    key = base - n // 2 + i
                    fh.write(json.dumps({"sku": f"k{key:09d}", "qty": i % 97, "note": "x" * 40}) + "\n")
            client: Any = MongoClient(servers.uri, tz_aware=True)
            runs = [("empty", 0), ("full", base)] + ([("raw-empty", 0), ("raw-full", base)] if args.before else [])
            took: dict[str, float] = {}
            for rnd in range(args.rounds):
                order = runs if rnd % 2 == 0 else runs[1::-1] + runs[2:]  # empty and full take turns first
                for name, size in order:
                    took[name] = min(took.get(name, float("inf")), run(client, servers.uri, Path(tmp), path, name,
                                                                      size, n, args.analyze_wait))
            client.close()
            print(f"   best of {args.rounds}: empty {took['empty']:.2f} s, full {took['full']:.2f} s")
            print(f"   throughput ratio full/empty   : {took['empty'] / took['full']:.2f}x  (goal >= 0.80x)")
            if args.before:
                print(f"   former pattern (raw), full/empty: {took['raw-empty'] / took['raw-full']:.2f}x")
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
