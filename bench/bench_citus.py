"""Benchmark: the shop on a local Citus cluster (a coordinator and two workers) against one embedded server.

Both run on this machine from scratch temp dirs, with the same schema and the same seed. Prints:

* the user-orders report on Citus vs the single node, median of --queries calls over as many users,
  goal <= 1.5x: as the library runs it (a new connection and a read-only transaction per call, so
  on Citus also new coordinator-to-worker connections) and on one open connection (as an
  application with a pool runs it), and through ``pg_runner.query(..., pool=)`` on a warm pool of
  ``connection.make_pool``; with the plan's task count (1: one shard group, one worker); the
  library call again with the nodes reaching each other over TCP with SCRAM (no pg_dist_poolinfo
  rows: the "before" of ``citus_local.node_sockets``, in the same run), and split into connect /
  first query of the session / the same query again (after and before); and the statement on a
  warm coordinator session that opens a new worker connection each time, sockets against TCP
  with SCRAM, interleaved (what the sockets save per coordinator-to-worker connection);
* the issue's literal user-orders query (joined on order_id only: a repartition join on Citus);
* the same report as a whole command line (``dbcli report run user-orders``, process start-up
  included), median of --cli-runs runs each;
* ``dbcli table import`` of --rows rows into a distributed table vs ``psql \\copy`` of the same CSV
  into the same table: throughput ratio, goal >= 0.7x; best of --repeat runs each, alternating.

    .venv/bin/python bench/bench_citus.py --rows 1000000 --repeat 2
    .venv/bin/python bench/bench_citus.py --rows 100000 --queries 100 --cli-runs 5   # a quick look

On one machine the cluster cannot be faster: three servers share the cores, and each distributed
statement pays a coordinator hop. docs/performance.md says what a real cluster changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_tables import run  # noqa: E402 - after the path is set

SEED: dict[str, Any] = {"seed": 3, "base_date": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "events": 0}
CLI = [sys.executable, "-m", "dbcli"]


def build_citus() -> Path:
    done = subprocess.run([str(ROOT / "scripts" / "build-citus")], capture_output=True, text=True, check=False,
                          env={**os.environ, "DBCLI_PYTHON": sys.executable})
    if done.returncode != 0:
        raise SystemExit(f"scripts/build-citus failed: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def write_profile(path: Path, data_dir: Path, citus: Path | None) -> Path:
    pg: dict[str, Any] = {"embedded": True}
    if citus is not None:
        pg["citus"] = {"workers": 2, "install": str(citus)}
    path.write_text(yaml.safe_dump({"data_dir": str(data_dir), "postgres": pg}))
    return path


def prepare(config: Path, users: int, products: int, orders: int) -> Any:
    from dbcli.config.load import load_config
    from dbcli.schema.apply import apply
    from dbcli.shop.seed.load import seed

    cfg = load_config(str(config))
    apply(cfg, target="postgres")
    seed(cfg, users=users, products=products, orders=orders, **SEED)
    from dbcli.postgres import connection

    with connection.connect(cfg, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return cfg


def report_times(cfg: Any, user_ids: list[int]) -> list[float]:
    from dbcli.reports import pg_runner, registry

    report = registry.get(cfg, "user-orders")
    times = []
    for uid in user_ids:
        values = report.resolve({"user_id": str(uid)})
        start = time.perf_counter()
        pg_runner.query(cfg, report, values)
        times.append(time.perf_counter() - start)
    return times


def open_connection_times(cfg: Any, user_ids: list[int]) -> list[float]:
    """The report's statement on one open connection, as an application with a pool runs it."""
    from dbcli.postgres import connection
    from dbcli.reports import registry

    report = registry.get(cfg, "user-orders")
    times = []
    with connection.connect(cfg, autocommit=True) as conn:
        for uid in user_ids:
            start = time.perf_counter()
            conn.execute(str(report.sql), dict(report.resolve({"user_id": str(uid)})), prepare=True).fetchall()
            times.append(time.perf_counter() - start)
    return times


LITERAL = ("SELECT o.order_id, o.order_date, p.product_name, oi.quantity FROM orders o JOIN order_items oi"
           " ON o.order_id = oi.order_id JOIN products p ON oi.product_id = p.product_id WHERE o.user_id = %s")


def session_phases(cfg: Any, user_ids: list[int]) -> dict[str, float]:
    """Medians (ms) of where a library call's time goes: connecting, the first routed query of the
    session (on Citus: the coordinator's metadata cache and its connection to the worker), the
    same query again in that session (both warm)."""
    from dbcli.postgres import connection
    from dbcli.reports import registry

    report = registry.get(cfg, "user-orders")
    phases: dict[str, list[float]] = {"connect": [], "first query": [], "second query": []}
    for uid in user_ids:
        values = dict(report.resolve({"user_id": str(uid)}))
        start = time.perf_counter()
        with connection.connect(cfg, autocommit=True) as conn:
            marks = [time.perf_counter()]
            for _ in range(2):
                conn.execute(str(report.sql), values, prepare=True).fetchall()
                marks.append(time.perf_counter())
        for name, begin, end in zip(phases, [start, *marks[:-1]], marks, strict=True):
            phases[name].append((end - begin) * 1000)
    return {name: statistics.median(values) for name, values in phases.items()}


def worker_connection_times(cfg: Any, user_ids: list[int]) -> list[float]:
    """The statement on one open coordinator session that keeps no worker connection between
    statements (``citus.max_cached_conns_per_worker = 0``): each one opens a new connection to the
    user's worker, so sockets against TCP with SCRAM is the only difference between two runs."""
    import psycopg

    from dbcli.postgres import connection
    from dbcli.reports import registry

    report = registry.get(cfg, "user-orders")
    sql = str(report.sql)
    times = []
    with psycopg.connect(connection.conninfo(cfg), autocommit=True) as conn:
        conn.execute("SET citus.max_cached_conns_per_worker = 0")
        conn.execute(sql, dict(report.resolve({"user_id": "1"})), prepare=True).fetchall()  # metadata warm
        for uid in user_ids:
            values = dict(report.resolve({"user_id": str(uid)}))
            start = time.perf_counter()
            conn.execute(sql, values, prepare=True).fetchall()
            times.append(time.perf_counter() - start)
    return times


def pool_times(cfg: Any, user_ids: list[int]) -> list[float]:
    """The library call on a warm connection of an application's pool (``pg_runner.query(pool=)``)."""
    from dbcli.postgres import connection
    from dbcli.reports import pg_runner, registry

    report = registry.get(cfg, "user-orders")
    times = []
    with connection.make_pool(cfg, min_size=1, max_size=1) as pool:
        pg_runner.query(cfg, report, report.resolve({"user_id": "1"}), pool=pool)  # the session warm
        for uid in user_ids:
            values = report.resolve({"user_id": str(uid)})
            start = time.perf_counter()
            pg_runner.query(cfg, report, values, pool=pool)
            times.append(time.perf_counter() - start)
    return times


def literal_times(cfg: Any, user_ids: list[int]) -> list[float]:
    """The issue's classic query as typed (orders joined to their lines on order_id only)."""
    from dbcli.postgres import connection

    times = []
    with connection.connect(cfg, autocommit=True) as conn:
        for uid in user_ids:
            start = time.perf_counter()
            conn.execute(LITERAL, (uid,), prepare=True).fetchall()
            times.append(time.perf_counter() - start)
    return times


@contextmanager
def tcp_between_nodes(cfg: Any) -> Iterator[None]:
    """Before: the nodes reach each other over TCP, authenticated by SCRAM (no pg_dist_poolinfo rows,
    as until dbcli routed them through their Unix sockets); the sockets again on leaving."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from dbcli.postgres import citus_local, embedded

    dbname = cfg.postgres.dbname or embedded.DEFAULT_DBNAME
    saved: dict[int, list[tuple[int, str]]] = {}

    def route(rows: dict[int, list[tuple[int, str]]] | None) -> None:
        for node in citus_local.nodes(cfg):
            server = embedded.running(node.data_dir)
            assert server is not None
            with psycopg.connect(make_conninfo(**server.conninfo(dbname)), autocommit=True) as conn:
                if rows is None:
                    saved[server.port] = [(int(r[0]), str(r[1])) for r in
                                          conn.execute("SELECT nodeid, poolinfo FROM pg_dist_poolinfo").fetchall()]
                citus_local.node_sockets(conn, [] if rows is None else rows[server.port])

    route(None)
    try:
        yield
    finally:
        route(saved)


def tasks_of_plan(cfg: Any) -> str:
    from dbcli.reports import explain_pg, registry

    report = registry.get(cfg, "user-orders")
    plan = explain_pg.explain(cfg, report, report.resolve({"user_id": "7"}))
    return str(plan.rows[0]["node"])


def write_csv(path: Path, rows: int, users: int) -> None:
    rnd = random.Random(11)
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id,seq,amount,note\n")
        for i in range(rows):
            f.write(f"{rnd.randint(1, users)},{i},{rnd.randint(1, 99_999) / 100:.2f},event number {i % 9973}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to import into the distributed table")
    parser.add_argument("--repeat", type=int, default=2, help="import runs each (best counts)")
    parser.add_argument("--queries", type=int, default=300, help="user-orders calls each (median counts)")
    parser.add_argument("--cli-runs", type=int, default=10, help="`dbcli report run user-orders` runs each")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=50000)
    args = parser.parse_args()

    from dbcli.postgres import citus_local, embedded
    from dbcli.postgres.params import conn_params

    install = build_citus()
    with tempfile.TemporaryDirectory(prefix="dbcli-bench-citus-") as tmp:
        work = Path(tmp)
        os.environ["XDG_DATA_HOME"] = str(work / "xdg")  # the servers' notes stay in the temp dir
        single_cfg = prepare(write_profile(work / "single.yaml", work / "single", None), args.users, 300, args.orders)
        citus_cfg = prepare(write_profile(work / "citus.yaml", work / "citus", install), args.users, 300, args.orders)
        try:
            users = random.Random(5).sample(range(1, args.users + 1), min(args.queries, args.users))
            plan = tasks_of_plan(citus_cfg)
            single_q, citus_q, citus_before = [], [], []
            for _ in range(2):  # alternating blocks: neither side gets the warm cache, nor a quiet minute, alone
                for part in (users[i:i + 10] for i in range(0, len(users), 10)):
                    single_q += report_times(single_cfg, part)
                    citus_q += report_times(citus_cfg, part)
                    with tcp_between_nodes(citus_cfg):
                        citus_before += report_times(citus_cfg, part)
            w_after, w_before = [], []
            for part in (users[i:i + 20] for i in range(0, len(users), 20)):
                w_after += worker_connection_times(citus_cfg, part)
                with tcp_between_nodes(citus_cfg):
                    w_before += worker_connection_times(citus_cfg, part)
            w_ms, w_before_ms = statistics.median(w_after) * 1000, statistics.median(w_before) * 1000
            s_ms, c_ms = statistics.median(single_q) * 1000, statistics.median(citus_q) * 1000
            c_before = statistics.median(citus_before) * 1000
            phase_users = users[: min(60, len(users))]
            s_phases, c_phases = session_phases(single_cfg, phase_users), session_phases(citus_cfg, phase_users)
            with tcp_between_nodes(citus_cfg):
                b_phases = session_phases(citus_cfg, phase_users)
            literal_users = users[: min(5, len(users))]  # a repartition join takes seconds on Citus
            s_lit = statistics.median(literal_times(single_cfg, literal_users)) * 1000
            c_lit = statistics.median(literal_times(citus_cfg, literal_users)) * 1000
            single_o, citus_o = [], []
            for part in (users[: len(users) // 2], users[len(users) // 2:]):
                single_o += open_connection_times(single_cfg, part)
                citus_o += open_connection_times(citus_cfg, part)
            s_open, c_open = statistics.median(single_o) * 1000, statistics.median(citus_o) * 1000
            single_p, citus_p = [], []
            for part in (users[: len(users) // 2], users[len(users) // 2:]):
                single_p += pool_times(single_cfg, part)
                citus_p += pool_times(citus_cfg, part)
            s_pool, c_pool = statistics.median(single_p) * 1000, statistics.median(citus_p) * 1000

            single_cli, citus_cli = [], []
            for i in range(args.cli_runs):
                argv = [*CLI, "report", "run", "user-orders", "-P", f"user_id={users[i % len(users)]}", "-q"]
                single_cli.append(run(argv, {**os.environ, "DBCLI_CONFIG": str(work / "single.yaml")}))
                citus_cli.append(run(argv, {**os.environ, "DBCLI_CONFIG": str(work / "citus.yaml")}))
            s_cli, c_cli = statistics.median(single_cli), statistics.median(citus_cli)

            csv = work / "events.csv"
            write_csv(csv, args.rows, args.users)
            params = conn_params(citus_cfg)
            psql = [str(install / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", params["host"], "-p",
                    params["port"], "-U", params["user"], "-d", params["dbname"]]
            run([*psql, "-c", "CREATE TABLE bench_events (user_id bigint NOT NULL, seq bigint NOT NULL,"
                              " amount numeric(12,2) NOT NULL, note text)"])
            run([*psql, "-c", "SELECT create_distributed_table('bench_events', 'user_id', colocate_with => 'users')"])
            env = {**os.environ, "DBCLI_CONFIG": str(work / "citus.yaml")}
            dbcli_in, bare_in = [], []
            for _ in range(args.repeat):
                run([*psql, "-c", "TRUNCATE bench_events"])
                bare_in.append(run([*psql, "-c", f"\\copy bench_events FROM '{csv}' WITH (FORMAT csv, HEADER)"]))
                run([*psql, "-c", "TRUNCATE bench_events"])
                dbcli_in.append(run([*CLI, "table", "import", "bench_events", str(csv), "-q"], env))
            bare_s, dbcli_s = min(bare_in), min(dbcli_in)
        finally:
            for cfg in (citus_cfg, single_cfg):
                for node in (citus_local.nodes(cfg) if citus_local.enabled(cfg) else []):
                    embedded.stop(node.data_dir)
            embedded.stop(Path(single_cfg.postgres.data_dir))

    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at the end), {os.cpu_count()} cores")
    print("| measure | single node | Citus, 2 workers | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| user-orders, library call (median of {len(citus_q)}) | {s_ms:.2f} ms | {c_ms:.2f} ms "
          f"| {c_ms / s_ms:.2f}x | <= 1.5x |")
    print(f"| the same, before: the nodes reach each other over TCP with SCRAM | {s_ms:.2f} ms | {c_before:.2f} ms "
          f"| {c_before / s_ms:.2f}x | <= 1.5x |")
    print(f"| - a statement that opens a new worker connection, on a warm coordinator session (median of "
          f"{len(w_after)}) | - | {w_ms:.2f} ms (before, TCP with SCRAM: {w_before_ms:.2f} ms) "
          f"| {w_ms / w_before_ms:.2f}x of before | - |")
    for name in s_phases:
        print(f"| - of which {name} (median of {len(phase_users)}; before: {b_phases[name]:.2f} ms) "
              f"| {s_phases[name]:.2f} ms | {c_phases[name]:.2f} ms | {c_phases[name] / s_phases[name]:.2f}x | - |")
    print(f"| user-orders through `pg_runner.query(pool=)`, warm pool (median of {len(citus_p)}) | {s_pool:.2f} ms "
          f"| {c_pool:.2f} ms | {c_pool / s_pool:.2f}x | <= 1.5x |")
    print(f"| user-orders on one open connection (median of {len(citus_o)}) | {s_open:.2f} ms | {c_open:.2f} ms "
          f"| {c_open / s_open:.2f}x | <= 1.5x |")
    print(f"| the literal query (joined on order_id only), one open connection (median of {len(literal_users)}) "
          f"| {s_lit:.2f} ms | {c_lit:.2f} ms | {c_lit / s_lit:.2f}x | - |")
    print(f"| `dbcli report run user-orders` (median of {args.cli_runs}) | {s_cli * 1000:.0f} ms "
          f"| {c_cli * 1000:.0f} ms | {c_cli / s_cli:.2f}x | - |")
    print(f"| plan on Citus | - | {plan} | - | 1 task |")
    print(f"| import {args.rows:,} rows (best of {args.repeat}) | psql \\copy {bare_s:.2f} s "
          f"({args.rows / bare_s:,.0f} rows/s) | dbcli {dbcli_s:.2f} s ({args.rows / dbcli_s:,.0f} rows/s) "
          f"| {bare_s / dbcli_s:.2f}x throughput | >= 0.7x |")


if __name__ == "__main__":
    main()
