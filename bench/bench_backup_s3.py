"""Benchmark: dbcli backup create into S3 (streaming upload) against pg_dump -Fc to a local file then a
raw upload of that file with the same client; peak RSS of the dbcli process.

Runs on its own scratch servers: an embedded PostgreSQL and a versitygw (scripts/build-versitygw) on
free ports. Every figure is the median of --repeat runs of the command line a cron job would run
(process start-up included), dbcli and the baselines alternating. Goal: dbcli <= 1.0x the
dump-then-upload time, peak RSS < 150 MB.

    .venv/bin/python bench/bench_backup_s3.py --rows 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backup import median, seed_pg, timed  # noqa: E402 - after the path is set

ACCESS, SECRET = "bench-access", "bench-secret-1234"
# runs dbcli as the console script does and writes the process's peak RSS (KiB) to $BENCH_RSS at exit
RSS_PROBE = ("import atexit, os, resource; atexit.register(lambda: open(os.environ['BENCH_RSS'], 'w')"
             ".write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))); "
             "from dbcli.__main__ import entry; entry()")
# the baseline's upload: the same client and multipart code dbcli uses, reading the file from disk
UPLOAD = ("import sys; from dbcli.backup.s3_client import connect; from dbcli.backup.s3_io import MultipartSink; "
          "from dbcli.config.model import S3Config; "
          "c = connect(S3Config(endpoint_url=sys.argv[1], access_key_id=sys.argv[2], secret_access_key=sys.argv[3], "
          "addressing_style='path')); s = MultipartSink(c, 'bench', sys.argv[5]); f = open(sys.argv[4], 'rb'); "
          "[s.write(b) for b in iter(lambda: f.read(1 << 20), b'')]; s.commit()")


def start_versitygw(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.fix_s3 import free_port

    binary = os.environ.get("DBCLI_VERSITYGW") or subprocess.run(
        [str(ROOT / "scripts" / "build-versitygw")], capture_output=True, text=True, check=True).stdout.strip()
    for d in ("objects", "meta"):
        (work / d).mkdir()
    port = free_port()
    proc = subprocess.Popen([binary, "--port", f"127.0.0.1:{port}", "--quiet", "posix", "--sidecar",
                             str(work / "meta"), str(work / "objects")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "ROOT_ACCESS_KEY": ACCESS,
                                                            "ROOT_SECRET_KEY": SECRET})
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("versitygw did not start")


def bench_client(endpoint: str) -> Any:
    """dbcli's S3 client for the scratch server."""
    from dbcli.backup.s3_client import connect
    from dbcli.config.model import S3Config

    return connect(S3Config(endpoint_url=endpoint, access_key_id=ACCESS, secret_access_key=SECRET,
                            addressing_style="path"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the events table")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is shown)")
    args, _others = parser.parse_known_args()  # bench/run passes every bench the same arguments

    from dbcli.postgres import embedded as local_pg

    work = Path(tempfile.mkdtemp(prefix="dbcli-bench-s3-"))
    os.chmod(work, 0o755)  # the embedded server runs as another user when we are root
    server = local_pg.ensure_running(work / "pg" / "data", "bench")
    gw: subprocess.Popen[bytes] | None = None
    try:
        gw, endpoint = start_versitygw(work)
        conninfo = server.conninfo("bench")
        print(f"seeding {args.rows} rows...", file=sys.stderr)
        seed_pg(conninfo, args.rows)
        bench_client(endpoint).create_bucket(Bucket="bench")
        pg_dump = str(local_pg.bin_dir() / "pg_dump")
        env = {**os.environ, "PGHOST": conninfo["host"], "PGPORT": conninfo["port"], "PGUSER": conninfo["user"]}
        settings: dict[str, Any] = {
            "postgres": {"host": conninfo["host"], "port": int(conninfo["port"]), "user": conninfo["user"],
                         "dbname": "bench"},
            "backup": {"dir": "s3://bench/dbcli", "s3": {"endpoint_url": endpoint, "access_key_id": ACCESS,
                                                         "secret_access_key": SECRET, "addressing_style": "path"}},
        }
        config = work / "dbcli.yaml"
        config.write_text(yaml.safe_dump(settings))
        rss_file = work / "rss"
        dbcli_env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache"), "BENCH_RSS": str(rss_file)}
        dbcli = [sys.executable, "-c", RSS_PROBE, "--config", str(config), "-q", "backup", "create"]
        local = work / "local.dump"
        upload = [sys.executable, "-c", UPLOAD, endpoint, ACCESS, SECRET, str(local)]
        times: dict[str, list[float]] = {"dbcli": [], "as_typed": [], "z1": []}
        rss: list[int] = []
        timed(dbcli, env=dbcli_env)  # warm-up: caches, byte-code
        for n in range(args.repeat):
            times["dbcli"].append(timed(dbcli, env=dbcli_env))
            rss.append(int(rss_file.read_text()))
            for name, extra in (("as_typed", []), ("z1", ["--compress=1"])):
                local.unlink(missing_ok=True)
                spent = timed([pg_dump, "-Fc", *extra, "-f", str(local), "bench"], env=env)
                spent += timed([*upload, f"raw/{name}-{n}.dump"], env=dbcli_env)
                times[name].append(spent)
        size = local.stat().st_size
        d, t, z = median(times["dbcli"]), median(times["as_typed"]), median(times["z1"])
        print(f"rows {args.rows}, dump {size / 2**20:.0f} MiB (pg_dump -Fc -Z1), median of {args.repeat}")
        print(f"dbcli backup create -> s3://          {d:7.2f} s   peak RSS {max(rss) / 1024:.0f} MB")
        print(f"pg_dump -Fc (as typed) + upload       {t:7.2f} s   ratio dbcli/baseline {d / t:.2f}x")
        print(f"pg_dump -Fc -Z1 (dbcli's level) + upload {z:4.2f} s   ratio dbcli/baseline {d / z:.2f}x")
    finally:
        if gw is not None:
            gw.terminate()
            gw.wait()
        local_pg.stop(work / "pg" / "data")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
