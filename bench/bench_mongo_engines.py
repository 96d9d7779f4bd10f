"""Benchmark: the embedded MongoDB-wire engines side by side on dbcli's own workloads, same run.

Engines (each started on a scratch directory, free 127.0.0.1 ports):

* ``ferretdb1-sqlite``: FerretDB 1.24, SQLite backend (scripts/build-ferretdb);
* ``ferretdb1-postgres``: FerretDB 1.24, PostgreSQL backend on a cluster of the wheel's PostgreSQL;
* ``ferretdb2``: FerretDB 2.7 + DocumentDB on Debian's PostgreSQL 15 (scripts/build-ferretdb2).

Workloads, each a dbcli subprocess (start-up included), in a fresh database per engine:

* ``activity ingest`` of ``--events`` events over ``--users`` users (the users in an embedded
  PostgreSQL shared by all engines);
* ``collection import`` of ``--docs`` documents into an empty collection, then the same file again
  with ``--upsert-key event_id`` into the collection that now holds them;
* the built-in Mongo reports (activity-by-type, daily-active-users, funnel, most-active-users,
  top-users), all five in a row;
* ``backup create --target mongo`` and ``backup restore --target mongo --drop`` of that database.

Prints seconds and rates per engine and each engine's ratio to the first one given (the baseline,
FerretDB 1.24 on SQLite by default). An engine that takes longer than ``--limit`` seconds on a
workload is stopped there and reported as such; so is a workload dbcli fails (its error shown).

    .venv/bin/python bench/bench_mongo_engines.py --events 10000 --users 1000 --docs 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_activity import write_events as write_activity  # noqa: E402
from bench.bench_collections import write_events as write_documents  # noqa: E402

ENGINES = ("ferretdb1-sqlite", "ferretdb1-postgres", "ferretdb2")
REPORTS = [
    ["activity-by-type", "-P", "from=2024-01-01", "-P", "to=2026-01-01"],
    ["daily-active-users", "-P", "from=2024-01-01", "-P", "to=2026-01-01"],
    ["funnel", "-P", "first=search", "-P", "then=checkout", "-P", "from=2024-01-01", "-P", "to=2026-01-01"],
    ["most-active-users"],
    ["top-users", "-P", "from=2024-01-01", "-P", "to=2026-01-01"],
]


def start_postgres(work: Path, users: int) -> str:
    """The embedded PostgreSQL with the shop schema and ``users`` users (activity ingest checks them)."""
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
                copy.write_row((uid, f"u{uid}@example.com", f"User {uid}", "gold"))
    return dsn


def start_mongo(engine: str, work: Path) -> tuple[str, Callable[[], None]]:
    """Start ``engine`` in ``work``: (uri, stop)."""
    from dbcli.errors import DbcliError
    from dbcli.mongo.embedded import engine_binary, start_engine, stop_engine

    work.mkdir(parents=True)
    try:
        binary, kind = engine_binary(engine)
        proc, port, cluster = start_engine(binary, kind, work)
    except DbcliError as e:
        sys.exit(f"{engine}: {e} ({e.hint})")

    return f"mongodb://127.0.0.1:{port}/", lambda: stop_engine(proc, cluster)


def dbcli(cfg: Path, args: list[str], limit: float, out: list[str] | None = None) -> float | str:
    """Seconds ``dbcli -c cfg ARGS`` took (its stdout appended to ``out``), else why it did not
    finish (past ``limit``, or its error)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "dbcli", "-c", str(cfg), *args], capture_output=True,
                              text=True, check=False, cwd=cfg.parent, timeout=limit)
    except subprocess.TimeoutExpired:
        return f"> {limit:.0f} s"
    if proc.returncode != 0:
        error = (proc.stderr.strip().splitlines() or [""])[-1][:90]
        print(f"dbcli {' '.join(args[:4])}: exit {proc.returncode}: {proc.stderr[-300:]}", file=sys.stderr)
        return f"failed after {time.perf_counter() - start:.0f} s (exit {proc.returncode}: {error})"
    if out is not None:
        out.append(proc.stdout)
    return time.perf_counter() - start


def run_engine(engine: str, work: Path, dsn: str, files: dict[str, Path], limit: float) -> dict[str, float | str]:
    uri, stop = start_mongo(engine, work / engine)
    cfg, docs_cfg = work / engine / "dbcli.yaml", work / engine / "import.yaml"
    for path, database in ((cfg, "activity"), (docs_cfg, "documents")):
        path.write_text(json.dumps({"postgres": {"dsn": dsn}, "mongo": {"uri": uri, "database": database},
                                    "backup": {"dir": str(work / engine / "backups")}}))
    times: dict[str, float | str] = {}
    try:
        times["ingest"] = dbcli(cfg, ["activity", "ingest", str(files["events"]), "-q"], limit)
        total = 0.0
        for report in REPORTS:
            took = dbcli(cfg, ["report", "run", *report, "-f", "json"], limit)
            if isinstance(took, str):
                times["reports"] = f"{report[0]} {took}"
                break
            total += took
        else:
            times["reports"] = total
        made: list[str] = []
        times["backup"] = dbcli(cfg, ["backup", "create", "--target", "mongo", "-f", "json"], limit, made)
        backup_id = json.loads(made[0])["id"] if made else "none"
        times["restore"] = dbcli(cfg, ["backup", "restore", backup_id, "--target", "mongo", "--drop", "-q"], limit)
        # last: FerretDB 1.24 may hang for good on an update command of many matching statements
        times["import"] = dbcli(docs_cfg, ["collection", "import", "user_activities", str(files["docs"]), "-q"],
                                limit)
        times["upsert"] = dbcli(docs_cfg, ["collection", "import", "user_activities", str(files["docs"]),
                                           "--upsert-key", "event_id", "-q"], limit)
    finally:
        stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="activity events to ingest (default 10000)")
    parser.add_argument("--users", type=int, default=1_000, help="users the events are spread over (default 1000)")
    parser.add_argument("--docs", type=int, default=20_000, help="documents to import (default 20000)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, the first is the baseline")
    parser.add_argument("--limit", type=float, default=600, help="seconds one workload may take (default 600)")
    args = parser.parse_args()
    engines = args.engines.split(",")
    counts = {"ingest": args.events, "import": args.docs, "upsert": args.docs}
    with tempfile.TemporaryDirectory(prefix="dbcli-bench-engines-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # the PostgreSQL clusters run as another user when we are root
        files = {"events": work / "events.jsonl", "docs": work / "docs.jsonl"}
        write_activity(files["events"], args.events, args.users, 24)
        write_documents(files["docs"], args.docs)
        from dbcli.postgres import embedded as local_pg

        dsn = start_postgres(work, args.users)
        results: dict[str, dict[str, float | str]] = {}
        try:
            for engine in engines:
                results[engine] = run_engine(engine, work, dsn, files, args.limit)
                print(f"{engine}: {results[engine]}", file=sys.stderr)
        finally:
            local_pg.stop(work / "pg" / "data")
    print(f"events {args.events} over {args.users} users, {args.docs} documents; load average "
          f"{os.getloadavg()[0]:.2f}; limit {args.limit:.0f} s a workload")
    base = results[engines[0]]
    for work_name in ("ingest", "reports", "backup", "restore", "import", "upsert"):
        cells = []
        for engine in engines:
            took = results[engine][work_name]
            if isinstance(took, str):
                cells.append(f"{engine}: {took}")
                continue
            rate = f" {counts[work_name] / took:7.0f}/s" if work_name in counts else ""
            ratio = base[work_name]
            versus = f" ({ratio / took:.2f}x)" if isinstance(ratio, float) else ""
            cells.append(f"{engine}: {took:6.2f} s{rate}{versus}")
        print(f"{work_name:8}| " + " | ".join(cells))


if __name__ == "__main__":
    main()
