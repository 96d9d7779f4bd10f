"""A local MongoDB-wire server for ``mongo.embedded: true``: ``mongod`` or ``ferretdb``.

Found at ``mongo.binary`` or on PATH (``$DBCLI_FERRETDB`` and the build cache of
``scripts/build-ferretdb`` too), started once with its data under the profile's data dir,
shared by every dbcli process and left running; ``dbcli local stop`` stops it.
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
from dbcli.servers import registry

FERRETDB_VERSION = "v1.24.2"


@dataclass
class LocalMongo:
    pid: int
    port: int
    binary: str
    kind: str
    data_dir: str

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
                 detach: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``mongod``/``ferretdb`` on a free local port, its output in ``data_dir/server.log``, and
    wait until it accepts connections: (process, port). ``detach``: its own session, outliving us.
    UnreachableError naming the log if it exits or does not listen within ``timeout`` seconds."""
    port = _free_port()
    with open(data_dir / "server.log", "ab") as log:
        proc = subprocess.Popen(server_command(binary, kind, data_dir, port), stdout=log, stderr=log,
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


def _start(cfg: Config, data_dir: Path) -> LocalMongo:
    binary, kind = find_binary(cfg)
    proc, port = start_server(binary, kind, data_dir, timeout=max(10.0, cfg.mongo.connect_timeout), detach=True)
    state = LocalMongo(pid=proc.pid, port=port, binary=binary, kind=kind, data_dir=str(data_dir))
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
    _state_file(data_dir).unlink(missing_ok=True)
    registry.forget("mongo", data_dir)
    return True
