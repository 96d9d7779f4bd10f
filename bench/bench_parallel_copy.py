"""Benchmark: dbcli table import / export --jobs N against psql \\copy (issue 19 item 6).

Runs on its own scratch embedded PostgreSQL (a temp dir, prepared transactions on) with the
e-commerce schema, and prints, in one run, each best of --repeat (alternating):

* ``psql \\copy products FROM`` vs ``dbcli table import products FILE.csv`` with one job and with
  ``--jobs N``: throughput ratios to psql (goal for --jobs 2: >= 1.3x), exact row counts;
* ``psql \\copy products TO`` vs ``dbcli table export products -o FILE`` (csv, and jsonl against the
  same psql csv) with one job and with ``--jobs N``: throughput ratios (goal for --jobs 2: >= 1.3x),
  the parts' bytes equal to one job's;
* the machine's ceiling: N ``psql \\copy FROM`` of the same parts side by side (no atomicity).

    .venv/bin/python bench/bench_parallel_copy.py --rows 1000000 --jobs 2 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_tables import measured, run, scratch_shop  # noqa: E402 - after the path is set


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV to import and export")
    parser.add_argument("--jobs", type=int, default=2, help="connections of the parallel runs")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tool (best is kept)")
    args = parser.parse_args()

    import psycopg

    from dbcli.postgres import embedded as local_pg

    with scratch_shop("dbcli-bench-parallel-") as shop:
        work, data_dir, dsn, env, psql = shop.work, shop.data_dir, shop.dsn, shop.env, shop.psql
        with psycopg.connect(dsn) as conn:
            slots = conn.execute("SHOW max_prepared_transactions").fetchone()
        dbcli = [sys.executable, "-m", "dbcli", "-q"]
        csv_path, copy_in = shop.products_csv(args.rows)
        size_mb = csv_path.stat().st_size / 2**20
        empty = shop.empty_products

        def count() -> int:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM products").fetchone()
            return int(row[0]) if row else -1

        import_cmd = [*dbcli, "table", "import", "products", str(csv_path)]
        halves = _halves(csv_path, args.jobs)
        times: dict[str, list[tuple[float, float]]] = {"psql": [], "psqls": [], "one": [], "jobs": []}
        for _ in range(args.repeat):
            for name, cmd in (("psql", [*psql, "-c", copy_in]), ("one", import_cmd),
                              ("jobs", [*import_cmd, "--jobs", str(args.jobs)]), ("psqls", [])):
                empty()
                if name == "psqls":  # the machine's ceiling: N psql \copy side by side, no atomicity
                    times[name].append((side_by_side([[*psql, "-c", copy_in.replace(str(csv_path), str(h))]
                                                      for h in halves]), 0.0))
                else:
                    times[name].append((run(cmd), 0.0) if name == "psql" else measured(cmd, env)[::2])
                assert count() == args.rows, f"{name}: {count()} rows imported, not {args.rows}"
        run([*psql, "-c", "VACUUM ANALYZE products"])
        imports = {k: min(v) for k, v in times.items()}

        one_out, jobs_out = work / "one.csv", work / "jobs.csv"
        copy_out = r"\copy products TO " f"'{work / 'psql.csv'}' WITH (FORMAT csv, HEADER)"
        times = {"psql": [], "one": [], "jobs": []}
        for _ in range(args.repeat):
            times["psql"].append((run([*psql, "-c", copy_out]), 0.0))
            times["one"].append(measured([*dbcli, "table", "export", "products", "-o", str(one_out)], env)[::2])
            times["jobs"].append(measured([*dbcli, "table", "export", "products", "-o", str(jobs_out),
                                           "--jobs", str(args.jobs)], env)[::2])
        exports = {k: min(v) for k, v in times.items()}
        same = one_out.read_bytes() == jobs_out.read_bytes()
        one_jl, jobs_jl = work / "one.jsonl", work / "jobs.jsonl"
        times = {"psql": times["psql"], "one": [], "jobs": []}
        for _ in range(args.repeat):
            times["one"].append(measured([*dbcli, "table", "export", "products", "-o", str(one_jl)], env)[::2])
            times["jobs"].append(measured([*dbcli, "table", "export", "products", "-o", str(jobs_jl),
                                           "--jobs", str(args.jobs)], env)[::2])
        jsonl = {k: min(v) for k, v in times.items()}
        same = same and one_jl.read_bytes() == jobs_jl.read_bytes()

        print(f"\n{args.rows:,} rows, {size_mb:.0f} MiB of CSV; PostgreSQL {local_pg.version(data_dir)}, "
              f"{os.cpu_count()} CPUs, max_prepared_transactions {slots[0] if slots else '?'}; "
              f"best of {args.repeat}\n")
        print("| measure | psql \\copy | dbcli, one job (client CPU) | dbcli --jobs N (client CPU) "
              "| ratio to psql (one / N) | goal |")
        print("|---|---|---|---|---|---|")
        for what, t in (("import", imports), ("export csv", exports), ("export jsonl (psql: csv)", jsonl)):
            (bare, _), (one, one_cpu), (jobs, jobs_cpu) = t["psql"], t["one"], t["jobs"]
            print(f"| {what} | {bare:.2f} s | {one:.2f} s ({one_cpu:.2f} s) | {jobs:.2f} s ({jobs_cpu:.2f} s; "
                  f"N={args.jobs}) | {bare / one:.2f}x / {bare / jobs:.2f}x | --jobs 2 >= 1.3x |")
        psqls = imports["psqls"][0]
        print(f"\nceiling: {args.jobs} psql \\copy of the parts side by side (no atomicity): {psqls:.2f} s, "
              f"{imports['psql'][0] / psqls:.2f}x one psql")
        print(f"\nexact counts after every import: yes; export --jobs bytes (csv, jsonl) equal to one job's: "
              f"{'yes' if same else 'NO'}")
def _halves(path: Path, jobs: int) -> list[Path]:
    """The CSV cut as --jobs cuts it, each part a file with the header (for the psql ceiling)."""
    from dbcli.postgres.parallel_split import split

    data = path.read_bytes()
    header = data[:data.index(b"\n") + 1]
    out = []
    for part in split(str(path), jobs, quote='"', header_records=1):
        target = path.with_suffix(f".part{part.index}.csv")
        target.write_bytes((header if part.index else b"") + data[part.start:part.end])
        out.append(target)
    return out


def side_by_side(cmds: list[list[str]]) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for cmd in cmds]
    for proc in procs:
        if proc.wait():
            raise SystemExit(f"psql failed: {proc.stderr.read().decode()[-300:] if proc.stderr else ''}")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
