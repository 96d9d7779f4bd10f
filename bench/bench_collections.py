"""Benchmark: ``dbcli collection import`` vs a raw pymongo ``insert_many`` loop, same FerretDB, same run.

Starts its own FerretDB (SQLite backend) on a scratch directory, writes a JSONL file of activity
events in Extended JSON (dates as ``{"$date": ...}``), then imports it twice into fresh databases:

* baseline: read the file, ``bson.json_util.loads`` each line, ``insert_many(batch, ordered=False)``
  every ``--batch-size`` documents (what a hand-written loader does; no validation);
* dbcli: ``dbcli collection import user_activities FILE --batch-size N`` as a subprocess (start-up,
  client-side JSON Schema validation of every document, and the report included).

Prints both throughputs and the ratio (goal: dbcli >= 0.9x the baseline), plus the CPU seconds
each side cost (client process + FerretDB), which a busy machine does not distort.

    /tmp/venv/bin/python bench/bench_collections.py --docs 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_ferretdb(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    from dbcli.errors import UnreachableError
    from dbcli.mongo.embedded import built_ferretdb, start_server

    binary = built_ferretdb()
    if binary is None:
        sys.exit("no FerretDB binary (run scripts/build-ferretdb, or set DBCLI_FERRETDB)")
    try:
        proc, port = start_server(binary, "ferretdb", work)
    except UnreachableError:
        sys.exit("FerretDB did not start: " + (work / "server.log").read_text()[-500:])
    return proc, f"mongodb://127.0.0.1:{port}/"


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) FerretDB has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_events(path: Path, n: int) -> None:
    types = ["login", "page.view", "search", "add_to_cart", "checkout"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            hour = i % 24
            fh.write(json.dumps({
                "event_id": f"ev-{i:08d}", "user_id": 1 + i % 5000, "type": types[i % len(types)],
                "timestamp": {"$date": f"2024-05-{1 + i % 28:02d}T{hour:02d}:{i % 60:02d}:00Z"},
                "day": f"2024-05-{1 + i % 28:02d}", "hour": f"2024-05-{1 + i % 28:02d}T{hour:02d}",
                "data": {"path": f"/p/{i % 100}", "ms": i % 1000}, "user": {"name": f"U{i % 5000}", "tier": "gold"},
            }) + "\n")


def baseline(uri: str, database: str, path: Path, batch: int) -> float:
    from bson import json_util
    from pymongo import MongoClient

    client = MongoClient(uri, tz_aware=True)
    coll = client[database]["user_activities"]
    start = time.perf_counter()
    docs = []
    inserted = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            docs.append(json_util.loads(line))
            if len(docs) >= batch:
                inserted += len(coll.insert_many(docs, ordered=False).inserted_ids)
                docs = []
    if docs:
        inserted += len(coll.insert_many(docs, ordered=False).inserted_ids)
    elapsed = time.perf_counter() - start
    client.close()
    # no count_documents here: FerretDB 1.x counts by reading every document, which would add
    # seconds of server CPU to the baseline's figure
    assert inserted > 0
    return elapsed


def dbcli_import(uri: str, database: str, path: Path, batch: int, work: Path) -> tuple[float, dict[str, object]]:
    cfg = work / f"{database}.yaml"
    cfg.write_text(json.dumps({"mongo": {"uri": uri, "database": database}}))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dbcli", "-c", str(cfg), "collection", "import", "user_activities",
                           str(path), "--batch-size", str(batch), "-f", "json"],
                          capture_output=True, text=True, check=False, cwd=work)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dbcli import failed ({proc.returncode}): {proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents to import (default 200000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="documents per insert_many (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="repeat both imports (alternating which goes first), "
                        "keep the best of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbcli-bench-coll-") as tmp:
        work = Path(tmp)
        proc, uri = start_ferretdb(work)
        try:
            data = work / "events.jsonl"
            write_events(data, args.docs)
            print(f"{args.docs} documents, {data.stat().st_size / 1e6:.1f} MB JSONL, batch {args.batch_size}, "
                  f"FerretDB (SQLite) at {uri}")
            base_best = dbcli_best = float("inf")
            report: dict[str, object] = {}
            cpu: dict[str, list[float]] = {"raw": [], "dbcli": []}

            def run_base(r: int) -> float:
                c0, s0 = time.process_time(), server_cpu(proc.pid)
                took = baseline(uri, f"base{r}", data, args.batch_size)
                cpu["raw"].append(time.process_time() - c0 + server_cpu(proc.pid) - s0)
                return took

            def run_dbcli(r: int) -> tuple[float, dict[str, object]]:
                c0, s0 = children_cpu(), server_cpu(proc.pid)
                result = dbcli_import(uri, f"dbcli{r}", data, args.batch_size, work)
                cpu["dbcli"].append(children_cpu() - c0 + server_cpu(proc.pid) - s0)
                return result

            for r in range(args.rounds):
                # alternate which goes first, so a warm cache or a busy neighbour favours neither
                if r % 2:
                    took, report = run_dbcli(r)
                    base = run_base(r)
                else:
                    base = run_base(r)
                    took, report = run_dbcli(r)
                print(f"  round {r + 1}: raw {base:.2f} s ({cpu['raw'][-1]:.1f} cpu-s), "
                      f"dbcli {took:.2f} s ({cpu['dbcli'][-1]:.1f} cpu-s)", flush=True)
                base_best, dbcli_best = min(base_best, base), min(dbcli_best, took)
            assert report.get("inserted") == args.docs, report
            base_rate, dbcli_rate = args.docs / base_best, args.docs / dbcli_best
            print(f"raw pymongo insert_many loop : {base_best:7.2f} s  {base_rate:9.0f} docs/s")
            print(f"dbcli collection import      : {dbcli_best:7.2f} s  {dbcli_rate:9.0f} docs/s  "
                  "(incl. start-up and JSON Schema validation)")
            print(f"throughput ratio dbcli/raw   : {dbcli_rate / base_rate:.2f}x  (goal >= 0.90x)")
            # CPU seconds of client + FerretDB do not depend on how busy the machine is
            print(f"cpu-seconds (client + FerretDB), best: raw {min(cpu['raw']):.1f}, dbcli {min(cpu['dbcli']):.1f} "
                  f"-> ratio {min(cpu['raw']) / min(cpu['dbcli']):.2f}x  (load average now "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
