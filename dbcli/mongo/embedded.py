"""A local MongoDB-wire server for ``mongo.embedded: true``: ``mongod`` or ``ferretdb``.

Found at ``mongo.binary`` or on PATH (``$DBCLI_FERRETDB`` and the build caches of
``scripts/build-ferretdb`` and ``scripts/build-ferretdb2`` too), or chosen by ``mongo.engine``;
started once with its data under the profile's data dir (with the PostgreSQL behind it for the
PostgreSQL-backed engines: ``pg_backend``), shared by every dbcli process and left running;
``dbcli local stop`` stops it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dbcli.config.model import Config
from dbcli.config.paths import cache_home
from dbcli.errors import ConfigError, UnreachableError
from dbcli.mongo import pg_backend
from dbcli.servers import registry

FERRETDB_VERSION = "v1.24.2"


@dataclass
class LocalMongo:
    pid: int
    port: int
    binary: str
    kind: str
    data_dir: str
    pg_bin: str = ""  # the PostgreSQL a ferretdb1-postgres/ferretdb2 stores in ("" for none)
    pg_data: str = ""

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"


def select_engine(cfg: Config) -> tuple[str, str]:
    """(path, kind) of the server to run; kind is ``mongod``, ``ferretdb`` (1.24 on SQLite),
    ``ferretdb1-postgres`` or ``ferretdb2``. ``mongo.engine`` unset: ``mongo.binary``,
    ``$DBCLI_FERRETDB`` or a ``mongod`` on PATH as before, else FerretDB 2.7 when
    ``scripts/build-ferretdb2`` has built it (the fastest: docs/servers.md), else FerretDB 1.24."""
    engine = cfg.mongo.engine
    if engine is None and not (cfg.mongo.binary or os.environ.get("DBCLI_FERRETDB") or shutil.which("mongod")):
        built2 = pg_backend.ferretdb2_build()
        if built2 is not None:
            return str(built2 / "ferretdb"), "ferretdb2"
    if engine is None:
        return find_binary(cfg)
    return engine_binary(engine, cfg.mongo.binary)


def engine_binary(engine: str, binary: str | None = None) -> tuple[str, str]:
    """(path, kind) for a ``mongo.engine`` value; ConfigError (exit 3) naming what is missing and
    the script that builds it. ``binary``: a FerretDB 1.24 to use rather than the built one."""
    if engine == "ferretdb2":
        return str(pg_backend.require_ferretdb2() / "ferretdb"), engine
    binary = binary or built_ferretdb() or shutil.which("ferretdb")
    if not binary or not os.access(binary, os.X_OK):
        raise ConfigError(f"mongo.engine {engine}: no FerretDB {FERRETDB_VERSION} binary found",
                          hint="run scripts/build-ferretdb, or set mongo.binary")
    return binary, "ferretdb" if engine == "ferretdb1-sqlite" else engine


def find_binary(cfg: Config) -> tuple[str, str]:
    """(path, kind) of the server to run; kind is ``mongod`` or ``ferretdb``."""
    candidates: list[str] = []
    if cfg.mongo.binary:
        candidates.append(cfg.mongo.binary)
    if os.environ.get("DBCLI_FERRETDB"):
        candidates.append(os.environ["DBCLI_FERRETDB"])
    for name in ("mongod", "ferretdb"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    built = built_ferretdb()
    if built:
        candidates.append(built)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            kind = "mongod" if Path(path).name.startswith("mongod") else "ferretdb"
            return path, kind
    if cfg.mongo.binary:
        raise ConfigError(f"mongo.binary {cfg.mongo.binary} is not an executable file")
    raise UnreachableError("no local MongoDB-wire server found (mongod or ferretdb)",
                           hint="install mongod, or build FerretDB with scripts/build-ferretdb")


def _state_file(data_dir: Path) -> Path:
    return data_dir / "dbcli-server.json"


def running(data_dir: Path) -> LocalMongo | None:
    try:
        state = LocalMongo(**json.loads(_state_file(data_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return state if _port_open(state.port) else None


def ensure_running(cfg: Config) -> LocalMongo:
    data_dir = Path(cfg.mongo.data_dir)
    server = running(data_dir)
    if server:
        return server
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / ".start.lock", "w") as lock:
        # concurrent dbcli processes: one starts the server, the others wait and reuse it
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = running(data_dir)
        if server:
            return server
        return _start(cfg, data_dir)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def server_command(binary: str, kind: str, data_dir: Path, port: int) -> list[str]:
    if kind == "mongod":
        db = data_dir / "db"
        db.mkdir(exist_ok=True)
        return [binary, "--dbpath", str(db), "--bind_ip", "127.0.0.1", "--port", str(port), "--quiet"]
    db = data_dir / "sqlite"
    db.mkdir(exist_ok=True)
    return [binary, "--handler=sqlite", f"--sqlite-url=file:{db}/", f"--listen-addr=127.0.0.1:{port}",
            "--state-dir=-", "--telemetry=disable", "--debug-addr=-", "--log-level=error"]


def built_ferretdb() -> str | None:
    """``$DBCLI_FERRETDB``, else the binary ``scripts/build-ferretdb`` leaves in the cache, if executable."""
    built = str(cache_home() / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb")
    for candidate in (os.environ.get("DBCLI_FERRETDB"), built):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_server(binary: str, kind: str, data_dir: Path, *, timeout: float = 20.0,
                 detach: bool = False,
                 cluster: pg_backend.Cluster | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``mongod``/``ferretdb`` on a free local port, its output in ``data_dir/server.log``, and
    wait until it accepts connections: (process, port). ``detach``: its own session, outliving us.
    ``cluster``: the PostgreSQL of a ``ferretdb1-postgres``/``ferretdb2`` kind (pg_backend.start_cluster).
    UnreachableError naming the log if it exits or does not listen within ``timeout`` seconds."""
    port = pg_backend.free_port()
    command = (pg_backend.ferretdb_command(kind, binary, cluster, port, data_dir / "state") if cluster
               else server_command(binary, kind, data_dir, port))
    with open(data_dir / "server.log", "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=detach, cwd=data_dir)
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise UnreachableError(f"the local {kind} did not start",
                                   hint=f"see its log: {data_dir / 'server.log'}")
        time.sleep(0.05)
    return proc, port


def start_engine(binary: str, kind: str, data_dir: Path, *, timeout: float = 20.0,
                 detach: bool = False) -> tuple[subprocess.Popen[bytes], int, pg_backend.Cluster | None]:
    """``start_server``, after the PostgreSQL cluster (in ``data_dir/pg-<kind>``) for the
    PostgreSQL-backed kinds: (process, port, cluster or None). The cluster is stopped again if
    FerretDB does not start."""
    cluster = None
    if kind in pg_backend.PG_ENGINES:
        root = Path(binary).parent if kind == "ferretdb2" else None
        cluster = pg_backend.start_cluster(kind, pg_backend.backend_bin(kind, root), data_dir / f"pg-{kind}",
                                           timeout=max(60.0, timeout))
    try:
        proc, port = start_server(binary, kind, data_dir, timeout=timeout, detach=detach, cluster=cluster)
    except UnreachableError:
        if cluster:
            pg_backend.stop_cluster(cluster.bin_dir, cluster.data_dir)
        raise
    return proc, port, cluster


def stop_engine(proc: subprocess.Popen[bytes], cluster: pg_backend.Cluster | None) -> None:
    """Stop what ``start_engine`` started in this process (not detached): FerretDB, then its cluster."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if cluster is not None:
        pg_backend.stop_cluster(cluster.bin_dir, cluster.data_dir)


def _start(cfg: Config, data_dir: Path) -> LocalMongo:
    binary, kind = select_engine(cfg)
    proc, port, cluster = start_engine(binary, kind, data_dir, timeout=max(10.0, cfg.mongo.connect_timeout),
                                       detach=True)
    state = LocalMongo(pid=proc.pid, port=port, binary=binary, kind=kind, data_dir=str(data_dir),
                       pg_bin=str(cluster.bin_dir) if cluster else "", pg_data=str(cluster.data_dir) if cluster else "")
    tmp = _state_file(data_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(_state_file(data_dir))
    registry.note("mongo", data_dir)  # so `local status` finds it whatever the profile
    return state


def stop(data_dir: Path) -> bool:
    server = running(data_dir)
    if server is None:
        return False
    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            # reaps it when this process started it (else it would linger as a zombie)
            if os.waitpid(server.pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        try:
            os.kill(server.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(server.pid, signal.SIGKILL)
    if server.pg_data:
        pg_backend.stop_cluster(Path(server.pg_bin), Path(server.pg_data))
    _state_file(data_dir).unlink(missing_ok=True)
    registry.forget("mongo", data_dir)
    return True
