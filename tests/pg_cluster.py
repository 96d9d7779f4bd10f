"""A throwaway PostgreSQL cluster from any PostgreSQL's binaries (Debian's 15, a wheel's 16...).

Used by tests/fix_pg.py when $DBCLI_TEST_PG_BIN names a bin directory, and by scripts/pg-server:
``initdb`` into a directory, ``pg_ctl start`` listening on a Unix socket only, ``pg_ctl stop``.
As root the cluster belongs to the unprivileged user the embedded server uses (PostgreSQL refuses
to run as root), so the test bed behaves the same either way.

    python -m tests.pg_cluster start DIR [BIN_DIR]   # prints the DSN
    python -m tests.pg_cluster stop DIR [BIN_DIR]
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dbcli.postgres import embedded

SUPERUSER = "postgres"
PORT = 5432  # only names the socket file: the cluster listens on no TCP address
# sun_path holds 108 bytes; the socket file is "<dir>/.s.PGSQL.5432"
MAX_SOCKET_DIR = 90
# a test bed: durability buys nothing and costs seconds per run
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_prepared_transactions": "16"}  # table import --jobs commits in two phases


@dataclass
class Cluster:
    base: Path
    bin_dir: Path
    socket_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def conninfo(self, dbname: str = "postgres") -> dict[str, str]:
        return {"host": str(self.socket_dir), "port": str(PORT), "user": SUPERUSER, "dbname": dbname}

    def dsn(self, dbname: str = "postgres") -> str:
        return " ".join(f"{k}={v}" for k, v in self.conninfo(dbname).items())


def _run(cmd: list[str], owner: pwd.struct_passwd | None, cwd: Path, timeout: float = 120) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                            user=owner.pw_uid if owner else None, group=owner.pw_gid if owner else None,
                            extra_groups=[] if owner else None)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-1000:]}")


def _open_path_to(path: Path) -> None:
    # the server's user must traverse every parent (pytest makes its temp dirs 0700)
    for parent in path.parents:
        mode = parent.stat().st_mode
        want = mode | stat.S_IXGRP | stat.S_IXOTH
        if want != mode:
            parent.chmod(want)


def _socket_dir(base: Path, owner: pwd.struct_passwd | None) -> Path:
    if len(str(base)) <= MAX_SOCKET_DIR:
        return base
    short = Path(tempfile.mkdtemp(prefix="dbcli-pg-"))
    if owner:
        os.chown(short, owner.pw_uid, owner.pw_gid)
    return short


def start(base: Path, bin_dir: Path) -> Cluster:
    """initdb into ``base/data`` (unless done) and start the server; returns once it accepts connections."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not os.access(bin_dir / tool, os.X_OK):
            raise RuntimeError(f"{bin_dir / tool} is not an executable file")
    owner = embedded.server_owner()
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    if owner:
        _open_path_to(base)
        os.chown(base, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(base=base, bin_dir=bin_dir, socket_dir=_socket_dir(base, owner))
    if not (cluster.data_dir / "PG_VERSION").exists():
        _run([str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U", SUPERUSER, "--auth=trust",
              "--encoding=UTF8", "--no-locale"], owner, base)
    options = f"-c listen_addresses='' -c unix_socket_directories='{cluster.socket_dir}' -c port={PORT}"
    options += "".join(f" -c {k}={v}" for k, v in SETTINGS.items())
    _run([str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-l", str(base / "server.log"), "-w",
          "-t", "60", "-o", options, "start"], owner, base)
    return cluster


def stop(cluster: Cluster) -> None:
    """Stop the server (if running) and remove a socket directory made outside ``base``."""
    if embedded.running(cluster.data_dir) is not None:
        _run([str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-w", "-m", "fast", "stop"],
             embedded.server_owner(), cluster.base)
    if cluster.socket_dir != cluster.base:
        for leftover in cluster.socket_dir.iterdir():
            leftover.unlink(missing_ok=True)
        cluster.socket_dir.rmdir()


def running(base: Path, bin_dir: Path) -> Cluster | None:
    """The cluster started in ``base``, read from its postmaster.pid, or None."""
    server = embedded.running(base.resolve() / "data")
    if server is None:
        return None
    return Cluster(base=base.resolve(), bin_dir=bin_dir, socket_dir=server.socket_dir)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    base = Path(argv[1])
    bin_dir = Path(argv[2]) if len(argv) == 3 else embedded.bin_dir()
    if argv[0] == "start":
        cluster = running(base, bin_dir) or start(base, bin_dir)
        print(cluster.dsn())
        return 0
    found = running(base, bin_dir)
    if found is not None:
        stop(found)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
