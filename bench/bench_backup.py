"""Benchmark: dbcli backup create/restore against bare pg_dump -Fc / pg_restore, and compression levels.

Runs on its own scratch servers: an embedded PostgreSQL in a temp dir and, when a FerretDB binary
is found, a FerretDB on a free port. Every figure is the median of --repeat runs of the command
line a cron job would run (process start-up included), dbcli and the baseline alternating.

    /tmp/venv/bin/python bench/bench_backup.py --rows 2000000 --docs 50000 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(cmd: list[str], env: dict[str, str] | None = None, cpu: list[float] | None = None) -> float:
    """Wall seconds of one run; its client CPU seconds (the process and the children it waited for:
    pg_dump/pg_restore, not the server backends) are appended to ``cpu``. The machine may be busy:
    CPU time is the steadier figure of what the client costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def seed_pg(conninfo: dict[str, str], rows: int) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(**conninfo), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events, accounts")
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, created timestamptz)")
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts, "
                     "kind text, payload jsonb, at timestamptz)")
        accounts = max(1, rows // 20)
        conn.execute("INSERT INTO accounts SELECT g, 'user' || g || '@example.com', "
                     "now() - g * interval '1 minute' FROM generate_series(1, %s) g", (accounts,))
        conn.execute("INSERT INTO events SELECT g, 1 + g %% %s, (ARRAY['view','click','buy'])[1 + g %% 3], "
                     "jsonb_build_object('n', g, 'h', md5(g::text)), now() - g * interval '1 second' "
                     "FROM generate_series(1, %s) g", (accounts, rows))
        conn.execute("VACUUM ANALYZE")


def start_ferretdb(work: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    from dbcli.errors import UnreachableError
    from dbcli.mongo.embedded import built_ferretdb, start_server

    binary = built_ferretdb()
    if binary is None:
        return None
    data = work / "ferretdb"
    data.mkdir()
    try:
        proc, port = start_server(binary, "ferretdb", data)
    except UnreachableError:
        return None
    return proc, f"mongodb://127.0.0.1:{port}/"


def seed_mongo(uri: str, docs: int) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    db = client.bench
    db.drop_collection("activities")
    batch = []
    for i in range(docs):
        batch.append({"user_id": i % 500, "type": ("view", "click", "buy")[i % 3], "n": i,
                      "props": {"page": f"/p/{i % 97}", "ref": "campaign-" + str(i % 13)}})
        if len(batch) == 5000:
            db.activities.insert_many(batch)
            batch = []
    if batch:
        db.activities.insert_many(batch)
    db.activities.create_index("user_id")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the events table")
    parser.add_argument("--docs", type=int, default=50_000, help="documents in the Mongo collection")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is shown)")
    parser.add_argument("--levels", default="0,1,6", help="compression levels to compare")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    from dbcli.config.model import BackupConfig
    from dbcli.postgres import embedded as local_pg
    from dbcli.postgres.tools import tool_version

    default_level = BackupConfig.__dataclass_fields__["compression"].default

    work = Path(tempfile.mkdtemp(prefix="dbcli-bench-backup-"))
    os.chmod(work, 0o755)  # the embedded server runs as another user when we are root
    data_dir = work / "pg" / "data"
    server = local_pg.ensure_running(data_dir, "bench")
    ferret = None
    try:
        conninfo = server.conninfo("bench")
        print(f"seeding {args.rows} rows...", file=sys.stderr)
        seed_pg(conninfo, args.rows)
        bin_dir = local_pg.bin_dir()
        pg_dump, pg_restore = str(bin_dir / "pg_dump"), str(bin_dir / "pg_restore")
        env = {**os.environ, "PGHOST": conninfo["host"], "PGPORT": conninfo["port"], "PGUSER": conninfo["user"]}
        ferret = start_ferretdb(work)
        if ferret:
            print(f"seeding {args.docs} documents...", file=sys.stderr)
            seed_mongo(ferret[1], args.docs)

        def config(level: int, dbname: str = "bench") -> Path:
            settings: dict[str, Any] = {
                "postgres": {"host": conninfo["host"], "port": int(conninfo["port"]), "user": conninfo["user"],
                             "dbname": dbname},
                "backup": {"dir": str(work / f"backups-{level}"), "compression": level},
            }
            if ferret:
                settings["mongo"] = {"uri": ferret[1], "database": "bench"}
            path = work / f"dbcli-{level}-{dbname}.yaml"
            path.write_text(yaml.safe_dump(settings))
            return path

        dbcli = [sys.executable, "-m", "dbcli"]
        # byte-code cached as an installed package has it (even where the environment says
        # PYTHONDONTWRITEBYTECODE), kept in the scratch directory, like the other benches
        dbcli_env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache"),
                     "XDG_CACHE_HOME": str(work / "xdg-cache")}
        dbcli_env.pop("PYTHONDONTWRITEBYTECODE", None)
        print(f"\npg_dump {tool_version(Path(pg_dump))[0]}, {args.rows} rows, median of {args.repeat}\n")
        print("| level | pg_dump -Fc (s) | dbcli backup create (s) | ratio | client CPU (s) bare / dbcli "
              "| dump size (MiB) |")
        print("|---|---|---|---|---|---|")
        latest: dict[int, str] = {}
        ratios: dict[int, float] = {}
        for level in levels:
            bare: list[float] = []
            ours: list[float] = []
            bare_cpu: list[float] = []
            ours_cpu: list[float] = []
            cfg = config(level)
            for i in range(args.repeat):
                out = work / f"bare-{level}-{i}.dump"
                for who in ("bare", "ours") if i % 2 == 0 else ("ours", "bare"):  # neither always goes first
                    if who == "bare":
                        bare.append(timed([pg_dump, "-Fc", f"-Z{level}", "-d", "bench", "-f", str(out)], env,
                                          bare_cpu))
                    else:
                        ours.append(timed([*dbcli, "-c", str(cfg), "-q", "backup", "create", "--target",
                                           "postgres"], dbcli_env, ours_cpu))
            size = (work / f"bare-{level}-0.dump").stat().st_size / 2**20
            ratios[level] = median(ours) / median(bare)
            print(f"| {level} | {median(bare):.2f} | {median(ours):.2f} | {median(ours) / median(bare):.2f} "
                  f"| {median(bare_cpu):.2f} / {median(ours_cpu):.2f} | {size:.1f} |")
            backups = sorted(p.name for p in (work / f"backups-{level}").iterdir() if not p.name.startswith("."))
            latest[level] = backups[-1]

        if default_level in ratios:
            print(f"\nAt dbcli's default level ({default_level}): {ratios[default_level]:.2f} "
                  f"(goal <= 1.10: {'met' if ratios[default_level] <= 1.10 else 'missed'})")

        # the cron line as typed: `pg_dump -Fc` at its default compression (zlib's default level)
        # against `dbcli backup create` at its default (backup.compression unset: level 1)
        typed_cfg = work / "dbcli-default.yaml"
        typed_cfg.write_text(yaml.safe_dump({
            "postgres": {"host": conninfo["host"], "port": int(conninfo["port"]), "user": conninfo["user"],
                         "dbname": "bench"},
            "backup": {"dir": str(work / "backups-default")}}))
        bare, ours = [], []
        for i in range(args.repeat):
            for who in ("bare", "ours") if i % 2 == 0 else ("ours", "bare"):
                if who == "bare":
                    bare.append(timed([pg_dump, "-Fc", "-d", "bench", "-f", str(work / "bare-default.dump")], env))
                else:
                    ours.append(timed([*dbcli, "-c", str(typed_cfg), "-q", "backup", "create", "--target",
                                       "postgres"], dbcli_env))
        print(f"\nAs typed, each at its default compression: pg_dump -Fc {median(bare):.2f} s, dbcli backup "
              f"create {median(ours):.2f} s, ratio {median(ours) / median(bare):.2f}")

        print("\n| level | pg_restore (s) | dbcli backup restore (s) | ratio | client CPU (s) bare / dbcli |")
        print("|---|---|---|---|---|")
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import make_conninfo

        admin = make_conninfo(**server.conninfo("postgres"))
        for level in levels:
            bare, ours, bare_cpu, ours_cpu = [], [], [], []
            for i in range(args.repeat):
                for who in ("bare", "ours") if i % 2 == 0 else ("ours", "bare"):
                    db = f"r_{who}_{level}_{i}"
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                    if who == "bare":
                        bare.append(timed([pg_restore, "-d", db, str(work / f"bare-{level}-{i}.dump")], env,
                                          bare_cpu))
                    else:
                        cfg = config(level, db)
                        ours.append(timed([*dbcli, "-c", str(cfg), "-q", "backup", "restore", latest[level],
                                           "--target", "postgres", "--dir", str(work / f"backups-{level}")],
                                          dbcli_env, ours_cpu))
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))
            print(f"| {level} | {median(bare):.2f} | {median(ours):.2f} | {median(ours) / median(bare):.2f} "
                  f"| {median(bare_cpu):.2f} / {median(ours_cpu):.2f} |")

        if ferret:
            print(f"\nMongoDB (FerretDB), {args.docs} documents, median of {args.repeat}\n")
            # the baseline: reading every document once as raw BSON, which any dump must do
            read_all = [sys.executable, "-c", "import sys; from pymongo import MongoClient; "
                        "from bson.raw_bson import RawBSONDocument; "
                        "c = MongoClient(sys.argv[1], document_class=RawBSONDocument); "
                        "sum(1 for _ in c.bench.activities.find({}, batch_size=5000))", ferret[1]]
            print("| level | raw read, pymongo (s) | dbcli backup create --target mongo (s) | ratio | size (KiB) |")
            print("|---|---|---|---|---|")
            for level in levels:
                bare, runs = [], []
                cfg = config(level)
                for _ in range(args.repeat):
                    bare.append(timed(read_all))
                    runs.append(timed([*dbcli, "-c", str(cfg), "-q", "backup", "create", "--target", "mongo"],
                                      dbcli_env))
                newest = sorted(p for p in (work / f"backups-{level}").iterdir() if not p.name.startswith("."))[-1]
                size = sum(p.stat().st_size for p in (newest / "mongo").rglob("*") if p.is_file()) / 1024
                print(f"| {level} | {median(bare):.2f} | {median(runs):.2f} | {median(runs) / median(bare):.2f} "
                      f"| {size:.0f} |")
        else:
            print("\n(no FerretDB binary: MongoDB figures skipped; run scripts/build-ferretdb)")
    finally:
        if ferret:
            ferret[0].terminate()
            ferret[0].wait(10)
        local_pg.stop(data_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
