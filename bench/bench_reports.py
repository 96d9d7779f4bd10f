"""Benchmark: ``dbcli report run`` against a bare psycopg script, and cached against uncached.

On a scratch embedded PostgreSQL seeded by ``dbcli.shop.seed`` (default ~1M order items), in the same
run and with the same SQL and parameters:

- ``dbcli report run user-orders`` (the busiest customer) and ``dbcli report run
  revenue-by-category`` over the whole data set, each against a bare Python script that
  connects with psycopg, runs the same SQL and prints the rows as JSON (goal: <= 1.3x wall time);
- the aggregating report served from the on-disk result cache against running it (goal: <= 0.2x).

Every timing is the wall time of a fresh process (what cron pays), the median of ``--repeat``
interleaved runs. Everything lives in a temporary directory, removed at the end.

    /tmp/venv/bin/python bench/bench_reports.py [--orders 450000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from dbcli.config.load import load_config
from dbcli.postgres import embedded as local_pg
from dbcli.reports import pg_runner, registry
from dbcli.schema import apply as schema
from dbcli.shop.seed import load as seeding

BASELINE = '''
import json, sys
import psycopg
from datetime import date
from decimal import Decimal

sql, params = sys.argv[1], json.loads(sys.argv[2])
types = {"from": date.fromisoformat, "to": date.fromisoformat, "min_revenue": Decimal, "user_id": int}
params = {k: types[k](v) for k, v in params.items()}
with psycopg.connect(sys.argv[3]) as conn:
    cur = conn.execute(sql.encode(), params)
    names = [d.name for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
print(json.dumps(rows, default=str))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--products", type=int, default=2_000)
    ap.add_argument("--orders", type=int, default=450_000, help="about 2.3 order items per order")
    ap.add_argument("--repeat", type=int, default=7)
    args, _ = ap.parse_known_args()  # bench/run passes its arguments to every script

    tmp = Path(tempfile.mkdtemp(prefix="bench_reports_"))
    data_dir = tmp / "pg" / "data"
    try:
        server = local_pg.ensure_running(data_dir, "bench")
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo("", **server.conninfo("bench"))
        config = tmp / "dbcli.yaml"
        config.write_text(yaml.safe_dump({"postgres": {"dsn": dsn}, "cache": {"dir": str(tmp / "cache")}}))
        cfg = load_config(str(config))
        schema.apply(cfg, target="postgres")
        t = time.perf_counter()
        counts = seeding.seed(cfg, users=args.users, products=args.products, orders=args.orders, events=0)
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            busiest = conn.execute("SELECT user_id, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC LIMIT 1").fetchone()
        print(f"PostgreSQL {local_pg.version(data_dir)}: {counts['orders']} orders, {counts['order_items']} order "
              f"items, {counts['users']} users (seeded in {time.perf_counter() - t:.0f} s); median of "
              f"{args.repeat} fresh processes each")

        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "xdg-cache"), "XDG_DATA_HOME": str(tmp / "xdg-data"),
               "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
               # byte-code cached as an installed package has it (even where the environment says
               # PYTHONDONTWRITEBYTECODE), kept in the scratch directory, out of the source tree
               "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        baseline = tmp / "baseline.py"
        baseline.write_text(BASELINE)
        dbcli = [sys.executable, "-m", "dbcli", "--config", str(config), "report", "run"]

        def bare(name: str, given: dict[str, str]) -> list[str]:
            import json

            return [sys.executable, str(baseline), registry.get(cfg, name).sql or "", json.dumps(given), dsn]

        def argv(given: dict[str, str]) -> list[str]:
            return [x for k, v in given.items() for x in ("--param", f"{k}={v}")]

        user = {"user_id": str(busiest[0])}
        whole = {"from": "2000-01-01", "to": "2100-01-01", "min_revenue": "0"}
        cases = {
            "user-orders dbcli": [*dbcli, "user-orders", *argv(user), "-f", "json", "--no-cache"],
            "user-orders psycopg": bare("user-orders", user),
            "aggregate dbcli": [*dbcli, "revenue-by-category", *argv(whole), "-f", "json", "--no-cache"],
            "aggregate psycopg": bare("revenue-by-category", whole),
            "aggregate dbcli cached": [*dbcli, "revenue-by-category", *argv(whole), "-f", "json", "--cache"],
        }
        _check_same_output(cases, env)
        times = _measure(cases, env, args.repeat)

        def show(label: str, a: str, b: str, goal: float) -> None:
            ratio = times[a] / times[b]
            verdict = "ok" if ratio <= goal else "MISSED"
            print(f"  {label:<44} {times[a]:6.3f} s vs {times[b]:6.3f} s  ratio {ratio:4.2f}x  "
                  f"(goal <= {goal}x: {verdict})")

        print(f"  user-orders: user {busiest[0]} with {busiest[1]} orders")
        show("report run user-orders vs psycopg script", "user-orders dbcli", "user-orders psycopg", 1.3)
        show("report run revenue-by-category vs psycopg", "aggregate dbcli", "aggregate psycopg", 1.3)
        show("revenue-by-category cached vs uncached", "aggregate dbcli cached", "aggregate dbcli", 0.2)
        startup = _median([sys.executable, "-m", "dbcli", "--version"], env, args.repeat)
        python = _median([sys.executable, "-c", "pass"], env, args.repeat)
        print(f"  for scale: python -c pass {python:.3f} s, dbcli --version {startup:.3f} s")
        _in_process(cfg, dsn, user, whole, args.repeat)
    finally:
        local_pg.stop(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _in_process(cfg: Any, dsn: str, user: dict[str, str], whole: dict[str, str], repeat: int) -> None:
    """The part dbcli controls, without process start-up: pg_runner.run against psycopg alone."""
    import psycopg

    from dbcli.output import Output

    def ours(name: str, given: dict[str, str]) -> float:
        t = time.perf_counter()
        report = registry.get(cfg, name)
        result = pg_runner.run(cfg, report, report.resolve(given))
        Output(fmt="json", stdout=open(os.devnull, "w")).rows(result.rows, result.columns)  # noqa: SIM115
        return time.perf_counter() - t

    def theirs(name: str, given: dict[str, str]) -> float:
        import json

        report = registry.get(cfg, name)
        values = report.resolve(given)
        t = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            cur = conn.execute((report.sql or "").encode(), values)
            names = [d.name for d in cur.description or []]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        with open(os.devnull, "w") as sink:
            sink.write(json.dumps(rows, default=str))
        return time.perf_counter() - t

    for name, given in (("user-orders", user), ("revenue-by-category", whole)):
        a = statistics.median(ours(name, given) for _ in range(repeat))
        b = statistics.median(theirs(name, given) for _ in range(repeat))
        print(f"  in-process {name:<33} {a:6.3f} s vs {b:6.3f} s  ratio {a / b:4.2f}x  "
              f"(pg_runner.run + JSON output vs psycopg + json.dumps)")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd[:8])}...\n{proc.stderr}")
    return elapsed, proc.stdout


def _check_same_output(cases: dict[str, list[str]], env: dict[str, str]) -> None:
    """Same rows from dbcli and the baseline (numbers compared by value), and the cache primed."""
    import json
    from decimal import Decimal

    def load(cmd: list[str]) -> list[dict[str, Any]]:
        rows = json.loads(_run(cmd, env)[1], parse_float=Decimal)
        return [{k: (str(v) if not isinstance(v, int | Decimal) else Decimal(v)) for k, v in r.items()}
                for r in rows]

    for name in ("user-orders", "aggregate"):
        ours, theirs = load(cases[f"{name} dbcli"]), load(cases[f"{name} psycopg"])
        if len(ours) != len(theirs) or any(a.keys() != b.keys() for a, b in zip(ours, theirs, strict=True)):
            raise SystemExit(f"{name}: dbcli and the baseline disagree")
        print(f"  {name}: {len(ours)} rows, same columns in both")
    _run(cases["aggregate dbcli cached"], env)  # primes the cache


def _measure(cases: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        # interleaved, so a noisy moment hits every case alike; the order flips every round, so no
        # case always runs first after the whole-table scan of the aggregating report
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for name in order:
            samples[name].append(_run(cases[name], env)[0])
    return {name: statistics.median(s) for name, s in samples.items()}


def _median(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    return statistics.median(_run(cmd, env)[0] for _ in range(repeat))


if __name__ == "__main__":
    main()
