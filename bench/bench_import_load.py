"""Benchmark: dbcli table import against psql \\copy, on an idle machine and beside a CPU-bound process.

Runs on its own scratch embedded PostgreSQL (a temp dir) with the e-commerce schema applied and
imports the same CSV (bench/bench_tables.py's products file) into the empty ``products`` table with
``psql \\copy`` and with ``dbcli table import``, alternating, best of --repeat runs each; then the
same again while one CPU-bound process (a busy loop) runs beside them, so that the client, the
server and the loop share the machine's cores. Prints both ratios against the baseline measured in
the same run (goals: >= 0.95x idle, >= 0.9x loaded; issue 19).

``--before DIR``: also run the dbcli of another source tree (``git archive HEAD dbcli | tar -x -C
DIR``) in the same rounds, for before/after figures.

    .venv/bin/python bench/bench_import_load.py --rows 1000000 --repeat 3 [--before /tmp/dbcli-head]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_tables import ROOT, measured, run, scratch_shop, write_csv  # noqa: E402

BUSY_LOOP = "while True: pass"


Measure = tuple[float, float, float]  # wall seconds, peak RSS MiB, CPU seconds


def best_of(repeat: int, empty: Callable[[], None], bare: Callable[[], float],
            trees: dict[str, Callable[[], Measure]]) -> tuple[float, dict[str, Measure]]:
    """(best psql time, best (wall, RSS, CPU) of each dbcli tree), all alternating on an emptied table."""
    bare_runs: list[float] = []
    runs: dict[str, list[Measure]] = {name: [] for name in trees}
    for _ in range(repeat):
        empty()
        bare_runs.append(bare())
        for name, ours in trees.items():
            empty()
            runs[name].append(ours())
    return min(bare_runs), {name: min(r) for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV to import")
    parser.add_argument("--repeat", type=int, default=3, help="import runs of each tool in each mode (best kept)")
    parser.add_argument("--before", type=Path, help="another dbcli source tree to measure in the same rounds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and server")
    args, _ = parser.parse_known_args()  # bench/run passes the same arguments to every script

    from dbcli.postgres import embedded as local_pg

    with scratch_shop("dbcli-bench-import-", args.keep) as shop:
        work, env, psql = shop.work, shop.env, shop.psql
        csv_path = work / "products.csv"
        print(f"writing {args.rows:,} rows of CSV...", file=sys.stderr)
        write_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 2**20
        copy_in = (r"\copy products (sku, product_name, description, price, stock, active) FROM "
                   f"'{csv_path}' WITH (FORMAT csv, HEADER)")
        ours_cmd = [sys.executable, "-m", "dbcli", "-q", "table", "import", "products", str(csv_path)]

        def empty() -> None:
            run([*psql, "-c", "TRUNCATE products RESTART IDENTITY CASCADE"])
            run([*psql, "-c", "CHECKPOINT"])

        def bare() -> float:
            return run([*psql, "-c", copy_in])

        trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}

        def ours(tree: Path) -> Callable[[], Measure]:
            return lambda: measured(ours_cmd, env, cwd=tree)

        runners = {name: ours(tree) for name, tree in trees.items()}

        warm = work / "warm.csv"  # a first run compiles the byte-code: not measured
        with open(csv_path, encoding="utf-8") as f:
            warm.write_text("".join(f.readline() for _ in range(1000)), encoding="utf-8")
        for tree in trees.values():
            empty()
            measured([*ours_cmd[:-1], str(warm)], env, cwd=tree)
        load_before = os.getloadavg()[0]  # other work on the machine makes "idle" relative
        results = {"idle": best_of(args.repeat, empty, bare, runners)}
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            results["loaded"] = best_of(args.repeat, empty, bare, runners)
        finally:
            busy.kill()
            busy.wait()

        print(f"\n{args.rows:,} rows, {size_mb:.0f} MiB of CSV; PostgreSQL {local_pg.version(shop.data_dir)}, "
              f"{os.cpu_count()} CPUs; best of {args.repeat} alternating runs each; load average at the start "
              f"{load_before:.1f}, at the end {os.getloadavg()[0]:.1f}\n")
        print("| machine | psql \\copy | dbcli table import | ratio | goal |"
              + (" before | before ratio |" if args.before else ""))
        print("|---|---|---|---|---|" + ("---|---|" if args.before else ""))
        for mode, goal in (("idle", ">= 0.95x"), ("loaded", ">= 0.9x")):
            bare_s, by_tree = results[mode]
            ours_s, rss, cpu = by_tree["after"]
            label = "idle" if mode == "idle" else "one CPU-bound process beside"
            row = (f"| {label} | {bare_s:.2f} s ({args.rows / bare_s:,.0f} rows/s) | {ours_s:.2f} s "
                   f"({args.rows / ours_s:,.0f} rows/s; client CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB) "
                   f"| {bare_s / ours_s:.2f}x throughput | {goal} |")
            if "before" in by_tree:
                before_s, _, before_cpu = by_tree["before"]
                row += f" {before_s:.2f} s (client CPU {before_cpu:.2f} s) | {bare_s / before_s:.2f}x |"
            print(row)

if __name__ == "__main__":
    main()
