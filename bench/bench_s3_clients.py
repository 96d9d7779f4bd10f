"""Benchmark: S3 client libraries for the s3:// repository: import time, and the throughput and peak
RSS of a streaming upload of --mib MiB read from a pipe (as pg_dump's output comes), 8 MiB parts,
4 in flight, into a versitygw on this machine. Libraries not installed are skipped (only boto3 is a
dependency: pip install obstore minio to compare). Each library runs in a process of its own.

    .venv/bin/python bench/bench_s3_clients.py --mib 200 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backup_s3 import ACCESS, SECRET, bench_client, start_versitygw  # noqa: E402 - after the path is set

# one library's run: prints "<import ms> <seconds> <peak RSS KiB>"
RUN = r'''
import os, resource, subprocess, sys, time
lib, endpoint, source, access, secret = sys.argv[1:6]
PART, CONC = 8 << 20, 4
start = time.perf_counter()
if lib == "boto3":
    from dbcli.backup.s3_client import connect
    from dbcli.config.model import S3Config
    c = connect(S3Config(endpoint_url=endpoint, access_key_id=access, secret_access_key=secret,
                         addressing_style="path"))
elif lib == "obstore":
    import obstore
    from obstore.store import S3Store
    store = S3Store("bench", endpoint=endpoint, access_key_id=access, secret_access_key=secret,
                    region="us-east-1", client_options={"allow_http": True})
else:
    import minio
    c = minio.Minio(endpoint.split("//")[1], access_key=access, secret_key=secret, secure=False,
                    region="us-east-1")
imported = time.perf_counter() - start
start = time.perf_counter()
proc = subprocess.Popen(["cat", source], stdout=subprocess.PIPE)
fd = proc.stdout.fileno()
def blocks():
    while b := os.read(fd, 1 << 20):
        yield b
if lib == "boto3":
    from dbcli.backup.s3_io import MultipartSink
    sink = MultipartSink(c, "bench", "boto3")
    for b in blocks():
        sink.write(b)
    sink.commit()
elif lib == "obstore":
    obstore.put(store, "obstore", blocks(), chunk_size=PART, max_concurrency=CONC)
else:
    class Reader:
        def read(self, n):
            return os.read(fd, n) if n > 0 else b""
    c.put_object("bench", "minio", Reader(), length=-1, part_size=PART)
proc.wait()
print(int(imported * 1000), time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the stream")
    parser.add_argument("--repeat", type=int, default=3, help="runs per library (the median is shown)")
    args, _others = parser.parse_known_args()  # bench/run passes every bench the same arguments

    work = Path(tempfile.mkdtemp(prefix="dbcli-bench-s3c-"))
    gw, endpoint = start_versitygw(work)
    try:
        bench_client(endpoint).create_bucket(Bucket="bench")
        source = work / "stream.bin"
        with open(source, "wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(1 << 20))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        print(f"streaming upload of {args.mib} MiB from a pipe, median of {args.repeat}")
        for lib in ("boto3", "obstore", "minio"):
            runs = []
            for _ in range(args.repeat):
                done = subprocess.run([sys.executable, "-c", RUN, lib, endpoint, str(source), ACCESS, SECRET], env=env,
                                      capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    break
                imported, seconds, rss = done.stdout.split()
                runs.append((int(imported), float(seconds), int(rss)))
            if not runs:
                print(f"{lib:8} not installed or failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            seconds = statistics.median(r[1] for r in runs)
            print(f"{lib:8} import {statistics.median(r[0] for r in runs):4.0f} ms   {seconds:5.2f} s = "
                  f"{args.mib / seconds:4.0f} MiB/s   peak RSS {max(r[2] for r in runs) / 1024:4.0f} MB")
    finally:
        gw.terminate()
        gw.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
