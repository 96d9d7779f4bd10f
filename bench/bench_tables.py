"""Benchmark: dbcli table import / export / get against psql \\copy and a bare psycopg script.

Runs on its own scratch embedded PostgreSQL (a temp dir) with the e-commerce schema applied and
prints, in one run:

* ``dbcli table import products FILE.csv`` vs ``psql \\copy`` of the same CSV into the same empty
  table: throughput ratio (goal >= 0.9x); best of --repeat runs each, alternating;
* ``dbcli table export products`` (csv and jsonl) of all rows: peak RSS of the dbcli process
  (goal < 150 MB), with ``psql \\copy ... TO`` time for reference;
* ``dbcli table get users 1`` vs ``python -c 'import psycopg; connect; SELECT'``: median wall time of
  --get-runs runs each, alternating (goal <= 1.5x).

Every figure is a whole command line as a script would run it (process start-up included).

    /tmp/venv/bin/python bench/bench_tables.py --rows 1000000 --repeat 2 --get-runs 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Measures the one child it runs (a fresh process, so no other child counts): peak RSS, CPU time.
RSS_WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
if proc.returncode:
    sys.exit(proc.stderr[-500:])
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, use.ru_maxrss, use.ru_utime + use.ru_stime)
"""


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])}... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def measured(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds) of ``cmd``, measured by a wrapper process.

    ``cwd``: where it runs (``python -m dbcli`` finds the dbcli package of its working directory first).
    """
    proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], env=env, capture_output=True, text=True,
                          check=False, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])}... failed: {proc.stderr.strip()[-500:]}")
    wall, rss, cpu = proc.stdout.split()
    return float(wall), int(rss) / 1024, float(cpu)


def write_csv(path: Path, rows: int) -> None:
    rnd = random.Random(7)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("sku,product_name,description,price,stock,active\n")
        for i in range(rows):
            desc = "" if i % 7 == 0 else f'"A fine product, number {i % 997}, in ""{rnd.choice("ABC")}"" size"'
            f.write(f"SKU-{i:08d},Product {i},{desc},{rnd.randint(100, 999_999) / 100:.2f},"
                    f"{rnd.randint(0, 500)},{'t' if i % 10 else 'f'}\n")


@dataclass
class ScratchShop:
    """A scratch embedded PostgreSQL with the e-commerce schema, and how to reach it."""

    work: Path  # the scratch directory
    data_dir: Path
    dsn: str
    env: dict[str, str]  # for dbcli child processes: its config file, JSON output
    psql: list[str]  # psql on the database, stopping at the first error

    def products_csv(self, rows: int) -> tuple[Path, str]:
        """products.csv of ``rows`` rows in the scratch directory, and the psql ``\\copy`` that loads it."""
        path = self.work / "products.csv"
        print(f"writing {rows:,} rows of CSV...", file=sys.stderr)
        write_csv(path, rows)
        return path, (r"\copy products (sku, product_name, description, price, stock, active) FROM "
                      f"'{path}' WITH (FORMAT csv, HEADER)")

    def empty_products(self) -> None:
        """No product left, and a checkpoint: each import starts from the same state."""
        run([*self.psql, "-c", "TRUNCATE products RESTART IDENTITY CASCADE"])
        run([*self.psql, "-c", "CHECKPOINT"])


@contextmanager
def scratch_shop(prefix: str, keep: bool = False) -> Iterator[ScratchShop]:
    """Starts a scratch server in a temp dir, applies the schema; stops and removes it at the end."""
    import psycopg

    from dbcli.config.load import load_config
    from dbcli.postgres import embedded as local_pg
    from dbcli.schema.files import migrations

    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)  # the embedded server runs as another user when we are root
    data_dir = work / "pg" / "data"
    server = local_pg.ensure_running(data_dir, "bench")
    try:
        dsn = " ".join(f"{k}={v}" for k, v in server.conninfo("bench").items())
        with psycopg.connect(dsn) as conn:
            for m in migrations(load_config()):
                conn.execute(m.sql.encode())
        config = work / "dbcli.yaml"
        config.write_text(yaml.safe_dump({"postgres": {"dsn": dsn}}))
        # byte-code cached as an installed package has it (even where the environment says
        # PYTHONDONTWRITEBYTECODE), kept in the scratch directory, out of the source tree
        env = {**os.environ, "DBCLI_CONFIG": str(config), "DBCLI_FORMAT": "json",
               "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        psql = [str(local_pg.bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn]
        yield ScratchShop(work, data_dir, dsn, env, psql)
    finally:
        if not keep:
            local_pg.stop(data_dir)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (server still running)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV to import and export")
    parser.add_argument("--repeat", type=int, default=2, help="import runs of each tool (best is kept)")
    parser.add_argument("--get-runs", type=int, default=10, help="runs of each `get` command (median)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and server")
    args = parser.parse_args()

    import psycopg

    from dbcli.postgres import embedded as local_pg

    with scratch_shop("dbcli-bench-tables-", args.keep) as shop:
        work, dsn, env, psql, data_dir = shop.work, shop.dsn, shop.env, shop.psql, shop.data_dir
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User ' || g "
                         "FROM generate_series(1, 1000) g")
        dbcli = [sys.executable, "-m", "dbcli"]
        csv_path, copy_in = shop.products_csv(args.rows)
        size_mb = csv_path.stat().st_size / 2**20
        empty = shop.empty_products
        bare_in, ours_in = [], []
        for _ in range(args.repeat):
            empty()
            bare_in.append(run([*psql, "-c", copy_in]))
            empty()
            ours_in.append(measured([*dbcli, "-q", "table", "import", "products", str(csv_path)], env))
        run([*psql, "-c", "VACUUM ANALYZE products"])
        bare_s = min(bare_in)
        ours_s, in_rss, in_cpu = min(ours_in)

        out_csv, out_jsonl = work / "export.csv", work / "export.jsonl"
        copy_out = (r"\copy products TO " f"'{work / 'psql-export.csv'}' WITH (FORMAT csv, HEADER)")
        psql_out = run([*psql, "-c", copy_out])
        csv_s, csv_rss, _ = measured([*dbcli, "-q", "table", "export", "products", "-o", str(out_csv)], env)
        jsonl_s, jsonl_rss, _ = measured([*dbcli, "-q", "table", "export", "products", "-o", str(out_jsonl)], env)
        _, get_rss, _ = measured([*dbcli, "table", "get", "users", "1"], env)

        bare_get = ("import psycopg\n"
                    f"conn = psycopg.connect({dsn!r})\n"
                    "print(conn.execute('SELECT * FROM users WHERE user_id = %s', (1,)).fetchone())\n")
        bare_t, ours_t = [], []
        for _ in range(args.get_runs):
            bare_t.append(run([sys.executable, "-c", bare_get]))
            ours_t.append(run([*dbcli, "table", "get", "users", "1"], env))
        bare_g, ours_g = statistics.median(bare_t), statistics.median(ours_t)

        print(f"\n{args.rows:,} rows, {size_mb:.0f} MiB of CSV; PostgreSQL {local_pg.version(data_dir)}, "
              f"{os.cpu_count()} CPUs\n")
        print("| measure | baseline | dbcli | ratio | goal |")
        print("|---|---|---|---|---|")
        print(f"| import (best of {args.repeat}) | psql \\copy {bare_s:.2f} s ({args.rows / bare_s:,.0f} rows/s) "
              f"| {ours_s:.2f} s ({args.rows / ours_s:,.0f} rows/s; client CPU {in_cpu:.2f} s, "
              f"peak RSS {in_rss:.0f} MiB) | {bare_s / ours_s:.2f}x throughput | >= 0.9x |")
        print(f"| export csv | psql \\copy TO {psql_out:.2f} s | {csv_s:.2f} s, peak RSS {csv_rss:.0f} MiB "
              f"| {psql_out / csv_s:.2f}x throughput | RSS < 150 MB |")
        print(f"| export jsonl | - | {jsonl_s:.2f} s, peak RSS {jsonl_rss:.0f} MiB | - | RSS < 150 MB |")
        print(f"| get users 1 (median of {args.get_runs}) | python -c psycopg {bare_g * 1000:.0f} ms "
              f"| {ours_g * 1000:.0f} ms (RSS {get_rss:.0f} MiB) | {ours_g / bare_g:.2f}x time | <= 1.5x |")


if __name__ == "__main__":
    main()
