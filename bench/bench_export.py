"""Benchmark: export at COPY speed (issue 19 item 1, issue 16's `dbcli sql` CSV goal).

Runs on its own scratch embedded PostgreSQL with the e-commerce schema and --rows products, and
prints in one run, each figure the median of --repeat alternating runs (whole command lines,
process start-up included, output to /dev/null or a file as a user would send it):

* ``dbcli table export products -o F.csv`` vs ``psql \\copy products TO F.csv`` (goal >= 0.9x);
* ``dbcli table export products --jobs 2 -o F.csv`` vs the same ``psql \\copy`` (goal >= 1.3x);
* ``dbcli table export products -o F.jsonl`` vs the same ``psql \\copy`` (goal >= 0.7x), and vs psql
  running the very ``row_to_json`` COPY dbcli sends (the server's share);
* ``dbcli sql QUERY -f csv`` vs ``psql -c "\\copy (QUERY) to stdout csv header"`` (goal >= 0.9x),
  for a query of integers, text, numerics and booleans and for ``select *`` (with a timestamptz);
  the outputs are checked to be the same bytes;
* ``dbcli sql "select * from products" -f jsonl`` vs the same psql csv (issue 19's jsonl goal,
  >= 0.7x) and vs psql running the ``row_to_json`` COPY dbcli sends;
* peak RSS of every dbcli run (goal < 150 MB);
* start-up: the export of no row, by both (Python and psycopg's import and a connection against
  psql's ~10 ms), and the streaming ratio with it taken out of both sides.

``--before DIR``: also run the dbcli of another source tree (e.g. ``git archive HEAD | tar -x -C
DIR``) in the same rounds, for before/after figures.

    .venv/bin/python bench/bench_export.py --rows 1000000 --repeat 5 [--before /tmp/dbcli-head]
    .venv/bin/python bench/bench_export.py --rows 10000000 --repeat 3 --only "sql csv"
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tables import ROOT, measured, run, scratch_shop

QUERIES = {
    "sql csv, int/text/numeric/bool": "select product_id, sku, product_name, description, price, stock, active "
                                      "from products",
    "sql csv, select * (timestamptz)": "select * from products",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs of each command (median kept)")
    parser.add_argument("--before", type=Path, help="another dbcli source tree to measure in the same rounds")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="measure only the rows whose name holds TEXT (repeatable; the csv export and the "
                             "start-up always run: the streaming ratio needs them)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from dbcli.postgres import embedded as local_pg

    with scratch_shop("dbcli-bench-export-") as shop:
        work, data_dir, psql = shop.work, shop.data_dir, shop.psql
        env = {k: v for k, v in shop.env.items() if k != "DBCLI_FORMAT"}  # every command here names its format
        os.chdir(work)  # `python -m dbcli` looks in the current directory first: each tree comes from PYTHONPATH
        _csv_path, copy_in = shop.products_csv(args.rows)
        run([*psql, "-c", copy_in])
        run([*psql, "-c", "VACUUM ANALYZE products"])
        trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}

        def dbcli(tree: Path, *argv: str) -> Callable[[], tuple[float, float, float]]:
            tree_env = {**env, "PYTHONPATH": str(tree)}
            # dbcli sql prints its rows to stdout (sent to /dev/null), as psql does: no --quiet there
            quiet = [] if argv[0] == "sql" else ["-q"]
            return lambda: measured([sys.executable, "-m", "dbcli", *quiet, *argv], tree_env)

        def bare(*argv: str) -> Callable[[], tuple[float, float, float]]:
            return lambda: measured([*psql, *argv], env)

        copy_to_file = bare("-c", rf"\copy products TO '{work / 'psql.csv'}' (FORMAT csv, HEADER)")
        measures: dict[str, dict[str, Callable[[], tuple[float, float, float]]]] = {
            "table export csv": {"baseline": copy_to_file,
                                 **{k: dbcli(t, "table", "export", "products", "-o", str(work / f"{k}.csv"))
                                    for k, t in trees.items()}},
            # issue 19 item 6: two connections in one exported snapshot (goal >= 1.3x)
            "table export csv --jobs 2": {"baseline": copy_to_file,
                                          **{k: dbcli(t, "table", "export", "products", "--jobs", "2",
                                                      "-o", str(work / f"{k}-jobs.csv")) for k, t in trees.items()}},
            "table export jsonl": {"baseline": copy_to_file,
                                   **{k: dbcli(t, "table", "export", "products", "-o", str(work / f"{k}.jsonl"))
                                      for k, t in trees.items()}},
            # the server's share of jsonl: psql running the very COPY dbcli sends
            "table export jsonl vs psql \\copy of its row_to_json query": {
                "baseline": bare("-c", rf"\copy (SELECT row_to_json(r) FROM products r) TO '{work / 'psql.jsonl'}' "
                                 r"(FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')"),
                **{k: dbcli(t, "table", "export", "products", "-o", str(work / f"{k}.jsonl"))
                   for k, t in trees.items()}},
            # start-up: the same commands for no row (what the ratios above include, once per command)
            "start-up (no row)": {"baseline": bare("-c", rf"\copy (SELECT * FROM products WHERE false) TO "
                                                         f"'{work / 'psql-empty.csv'}' (FORMAT csv, HEADER)"),
                                  **{k: dbcli(t, "table", "export", "products", "--where", "product_id=0",
                                              "-o", str(work / f"{k}-empty.csv")) for k, t in trees.items()}},
            **{label: {"baseline": bare("-c", rf"\copy ({q}) to stdout csv header"),
                       **{k: dbcli(t, "sql", q, "-f", "csv") for k, t in trees.items()}}
               for label, q in QUERIES.items()},
            "sql jsonl, select * vs psql \\copy csv": {
                "baseline": bare("-c", r"\copy (select * from products) to stdout csv header"),
                **{k: dbcli(t, "sql", "select * from products", "-f", "jsonl") for k, t in trees.items()}},
            "sql jsonl, select * vs psql \\copy of its row_to_json query": {
                "baseline": bare("-c", r"\copy (select row_to_json(r.*) from (select * from products) r) to stdout "
                                 r"(FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')"),
                **{k: dbcli(t, "sql", "select * from products", "-f", "jsonl") for k, t in trees.items()}},
        }
        if args.only:  # large --rows runs: only what is asked for
            measures = {name: cmds for name, cmds in measures.items()
                        if name in ("table export csv", "start-up (no row)") or any(o in name for o in args.only)}
        for q in QUERIES.values():  # the same bytes as psql's \copy
            same = [subprocess.run(cmd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, check=True).stdout
                    for cmd in ([*psql, "-c", rf"\copy ({q}) to stdout csv header"],
                                [sys.executable, "-m", "dbcli", "sql", q, "-f", "csv"])]
            if same[0] != same[1]:
                raise SystemExit(f"dbcli sql -f csv differs from psql \\copy for {q!r}")
        load_before = os.getloadavg()
        results: dict[str, dict[str, list[tuple[float, float, float]]]] = {m: {} for m in measures}
        for round_no in range(args.repeat):
            for name, commands in measures.items():
                order = list(commands) if round_no % 2 == 0 else list(reversed(commands))
                for who in order:
                    results[name].setdefault(who, []).append(commands[who]())
        load_after = os.getloadavg()
        if not filecmp.cmp(work / "after.csv", work / "psql.csv", shallow=False):
            raise SystemExit("table export csv differs from psql \\copy's file")
        if (work / "after-jobs.csv").exists() and not filecmp.cmp(work / "after-jobs.csv", work / "psql.csv",
                                                                   shallow=False):
            raise SystemExit("table export --jobs 2 differs from psql \\copy's file")

        print(f"\n{args.rows:,} rows; PostgreSQL {local_pg.version(data_dir)}, {os.cpu_count()} CPUs, load average "
              f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; medians of {args.repeat} alternating runs\n")
        print("| measure | baseline (psql) | dbcli | ratio (throughput) | " +
              ("before | before ratio | " if args.before else "") + "peak RSS | client CPU psql / dbcli" +
              (" / before" if args.before else "") + " |")
        print("|---|---|---|---|" + ("---|---|" if args.before else "") + "---|---|")
        for name, by in results.items():
            base = statistics.median(w for w, _, _ in by["baseline"])
            after = statistics.median(w for w, _, _ in by["after"])
            rss = max(r for _, r, _ in by["after"])
            cells = [name, f"{base:.2f} s", f"{after:.2f} s", f"{base / after:.2f}x"]
            if args.before:
                before = statistics.median(w for w, _, _ in by["before"])
                rss_before = max(r for _, r, _ in by["before"])
                cells += [f"{before:.2f} s", f"{base / before:.2f}x"]
            cells.append(f"{rss:.0f} MiB" + (f" (before {rss_before:.0f} MiB)" if args.before else ""))
            cells.append(" / ".join(f"{statistics.median(c for _, _, c in by[who]):.2f} s"
                                    for who in ("baseline", "after", "before") if who in by))
            print("| " + " | ".join(cells) + " |")
        start = {who: statistics.median(w for w, _, _ in runs) for who, runs in results["start-up (no row)"].items()}
        csv_runs = results["table export csv"]
        base, after = (statistics.median(w for w, _, _ in csv_runs[who]) for who in ("baseline", "after"))
        print(f"\nstreaming ratio of table export csv, start-up taken out of both: "
              f"{(base - start['baseline']) / (after - start['after']):.2f}x")


if __name__ == "__main__":
    main()
