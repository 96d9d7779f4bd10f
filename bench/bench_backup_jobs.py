"""Benchmark: dbcli backup create/restore --jobs 2 against pg_dump -Fc / pg_restore (one job), as typed.

Runs on its own scratch embedded PostgreSQL in a temp dir: 4 tables of --rows rows each (made
with INSERT ... SELECT generate_series). Every figure is the median of --repeat runs of the
command line a cron job would run (process start-up included), dbcli and the baseline
alternating. "As typed": each at its own default compression (pg_dump -Fc: zlib's default;
dbcli: backup.compression's default), as bench_backup's "as typed" line.

    .venv/bin/python bench/bench_backup_jobs.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backup import median, timed  # noqa: E402 - after the path is set

TABLES = 4


def seed(conninfo: dict[str, str], rows: int) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(**conninfo), autocommit=True) as conn:
        for i in range(1, TABLES + 1):
            name = sql.Identifier(f"t{i}")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, n int NOT NULL, label text, "
                                 "at timestamptz)").format(name))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, g %% 1000, md5(g::text), "
                                 "now() - g * interval '1 second' FROM generate_series(1, %s) g").format(name),
                         (rows,))
        conn.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of the 4 tables")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (the median is shown)")
    parser.add_argument("--jobs", type=int, default=2)
    args, _ = parser.parse_known_args()  # bench/run passes every bench the same arguments

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from dbcli.config.model import BackupConfig
    from dbcli.postgres import embedded as local_pg
    from dbcli.postgres.tools import tool_version

    work = Path(tempfile.mkdtemp(prefix="dbcli-bench-jobs-"))
    os.chmod(work, 0o755)  # the embedded server runs as another user when we are root
    data_dir = work / "pg" / "data"
    server = local_pg.ensure_running(data_dir, "bench")
    try:
        conninfo = server.conninfo("bench")
        print(f"seeding {TABLES} tables of {args.rows} rows...", file=sys.stderr)
        seed(conninfo, args.rows)
        bin_dir = local_pg.bin_dir()
        pg_dump, pg_restore = str(bin_dir / "pg_dump"), str(bin_dir / "pg_restore")
        env = {**os.environ, "PGHOST": conninfo["host"], "PGPORT": conninfo["port"], "PGUSER": conninfo["user"]}
        backups = work / "backups"

        def config(dbname: str) -> Path:
            path = work / f"dbcli-{dbname}.yaml"
            path.write_text(yaml.safe_dump({
                "postgres": {"host": conninfo["host"], "port": int(conninfo["port"]), "user": conninfo["user"],
                             "dbname": dbname},
                "backup": {"dir": str(backups)}}))
            return path

        dbcli = [sys.executable, "-m", "dbcli"]
        dbcli_env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache"),
                     "XDG_CACHE_HOME": str(work / "xdg-cache")}
        dbcli_env.pop("PYTHONDONTWRITEBYTECODE", None)
        jobs = str(args.jobs)
        bare: list[float] = []
        same_level: list[float] = []  # pg_dump -Fc at dbcli's level: how much of the gain is -j
        ours: list[float] = []
        dump = work / "bare.dump"
        level = BackupConfig.__dataclass_fields__["compression"].default
        for i in range(args.repeat):
            for who in ("bare", "level", "ours") if i % 2 == 0 else ("ours", "level", "bare"):
                if who == "bare":
                    bare.append(timed([pg_dump, "-Fc", "-d", "bench", "-f", str(dump)], env))
                elif who == "level":
                    same_level.append(timed([pg_dump, "-Fc", f"-Z{level}", "-d", "bench", "-f",
                                             str(work / "level.dump")], env))
                else:
                    ours.append(timed([*dbcli, "-c", str(config("bench")), "-q", "backup", "create", "--target",
                                       "postgres", "--jobs", jobs], dbcli_env))
        latest = sorted(p.name for p in backups.iterdir() if not p.name.startswith("."))[-1]
        size = sum(p.stat().st_size for p in (backups / latest).rglob("*") if p.is_file()) / 2**20
        print(f"\npg_dump {tool_version(Path(pg_dump))[0]}, {TABLES} tables x {args.rows} rows, "
              f"median of {args.repeat}\n")
        print(f"| step | baseline (s) | dbcli --jobs {jobs} (s) | speed-up |")
        print("|---|---|---|---|")
        print(f"| dump: pg_dump -Fc ({dump.stat().st_size / 2**20:.0f} MiB) vs backup create "
              f"({size:.0f} MiB) | {median(bare):.2f} | {median(ours):.2f} | {median(bare) / median(ours):.2f}x |")
        print(f"| dump: pg_dump -Fc -Z{level} (dbcli's level) vs backup create | {median(same_level):.2f} "
              f"| {median(ours):.2f} | {median(same_level) / median(ours):.2f}x |")
        dump_ratio = median(bare) / median(ours)

        admin = make_conninfo(**server.conninfo("postgres"))
        bare, ours, raw_jobs = [], [], []  # raw_jobs: bare pg_restore -j, the most --jobs can give here
        for i in range(args.repeat):
            for who in ("bare", "raw", "ours") if i % 2 == 0 else ("ours", "raw", "bare"):
                db = f"r_{who}_{i}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                if who == "bare":
                    bare.append(timed([pg_restore, "-d", db, str(dump)], env))
                elif who == "raw":
                    raw_jobs.append(timed([pg_restore, "-j", jobs, "-d", db, str(backups / latest / "postgres"
                                                                                  / "bench.dir")], env))
                else:
                    ours.append(timed([*dbcli, "-c", str(config(db)), "-q", "backup", "restore", latest,
                                       "--target", "postgres", "--jobs", jobs], dbcli_env))
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))
        restore_ratio = median(bare) / median(ours)
        print(f"| restore: pg_restore (1 job) vs backup restore (counts checked) | {median(bare):.2f} "
              f"| {median(ours):.2f} | {restore_ratio:.2f}x |")
        print(f"| restore: pg_restore (1 job) vs bare pg_restore -j {jobs} of the same directory | "
              f"{median(bare):.2f} | {median(raw_jobs):.2f} | {median(bare) / median(raw_jobs):.2f}x |")
        print(f"| dbcli's own time around pg_restore -j (checksums, checks, start-up, counts) | - "
              f"| {median(ours) - median(raw_jobs):.2f} | - |")
        print(f"\ngoals >= 1.4x: dump {'met' if dump_ratio >= 1.4 else 'missed'}, "
              f"restore {'met' if restore_ratio >= 1.4 else 'missed'}")
    finally:
        local_pg.stop(data_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
