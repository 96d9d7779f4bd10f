"""Benchmark: ``dbcli sql 'select 1'`` against a bare python + psycopg script (issue 16's goal:
<= 1.3x), whole command lines with start-up, median of --repeat alternating runs.

    .venv/bin/python bench/bench_sql.py --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_tables import scratch_shop  # noqa: E402 - after the path is set

BARE = ("import os, psycopg\n"
        "with psycopg.connect(os.environ['BENCH_DSN']) as conn:\n"
        "    print(conn.execute('select 1 as n').fetchone()[0])\n")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (the median is kept)")
    args = parser.parse_args()
    with scratch_shop("dbcli-bench-sql-") as shop:
        env = {**shop.env, "BENCH_DSN": shop.dsn}
        cmds = {"import psycopg": [sys.executable, "-c", "import psycopg"],
                "bare": [sys.executable, "-c", BARE],
                "dbcli": [sys.executable, "-m", "dbcli", "sql", "select 1 as n", "-f", "csv"]}
        for cmd in cmds.values():  # warm-up: byte-code compiled, files in the page cache
            timed(cmd, env, shop.work)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.repeat):
            for name, cmd in cmds.items():
                times[name].append(timed(cmd, env, shop.work))
        floor, b, d = (statistics.median(times[k]) for k in cmds)
        print(f"median of {args.repeat}: python -c 'import psycopg' {floor:.3f} s, bare python+psycopg "
              f"select 1 {b:.3f} s, dbcli sql {d:.3f} s, ratio {d / b:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
