"""Physical backups of the local Citus cluster: its nodes, their areas of the repository, and the
cluster's restore points.

Each node archives its WAL into ``<repository>/cluster/<node>/wal`` and keeps its base backups in
``<repository>/cluster/<node>/`` (ordinary physical backups, one per node, taken by base.py); the node
names are the nodes' directory names (``coordinator``, ``worker-1``...). A base backup per node is
not consistent across nodes by itself: ``citus_create_restore_point`` writes one named point into
every node's WAL while distributed commits are blocked, and recovering every node to that name gives
one consistent cluster. The points are recorded in ``<repository>/cluster/restore-points.json`` (name,
time, each node's WAL position just after it and its segment), so ``backup list`` and ``wal status``
show what the cluster can be restored to; cluster backups in ``<repository>/cluster/backups/<id>.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcli.backup import store as backup_store
from dbcli.backup.physical import location, server
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.store import Clock, iso
from dbcli.config.model import CitusConfig, Config
from dbcli.errors import CheckFailedError, ConfigError, ConflictError, UnreachableError, UsageError
from dbcli.fsutil import atomic_write
from dbcli.postgres import citus_local, embedded
from dbcli.postgres import connection as postgres
from dbcli.postgres.params import conn_params

CLUSTER_DIR = "cluster"  # and BACKUPS: also in dbcli.backup.ids (shell completion)
POINTS = "restore-points.json"
BACKUPS = "backups"
VERIFIED = "verified"  # <cluster>/backups/verified/<id>.json: the last ``backup verify`` of a cluster backup
KIND = "physical-cluster"
ARCHIVE_WAIT_S = 60.0  # the segment holding a new restore point reaches the archive (one archive_command per node)
# PostgreSQL's limit on a restore point's name (MAXFNAMELEN - 1)
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")
REPLICATION_HBA = "local replication all trust"


@dataclass(frozen=True)
class ClusterNode:
    name: str  # the node's directory name: coordinator, worker-1, ...
    cfg: Config  # the profile narrowed to this node: its socket, the superuser
    port: int  # its TCP port, as pg_dist_node registers it
    data_dir: Path


def is_cluster(cfg: Config) -> bool:
    return citus_local.enabled(cfg)


def local_root(cfg: Config, root: Path | str | None) -> Path:
    """The repository, which must be a local directory for a cluster (ConfigError, exit 3, for S3)."""
    where = location.open_root(cfg, root)
    if not isinstance(where, Path):
        raise ConfigError("physical backups of a Citus cluster go into a local repository (not S3 yet)",
                          hint="give --dir DIR (or a local backup.dir)")
    return where


def cluster_root(root: Path) -> Path:
    return root / CLUSTER_DIR


def node_root(root: Path, name: str) -> Path:
    """A node's area of the repository: its base backups and its ``wal/``."""
    return cluster_root(root) / name


def node_config(cfg: Config, socket_dir: Path, port: int) -> Config:
    """``cfg`` pointing at one node as its superuser over the socket (no cluster start-up behind it);
    its server programs are the Citus install's, which a restored node needs (citus.so)."""
    pg = dataclasses.replace(cfg.postgres, embedded=False, citus=CitusConfig(), dsn=None, host=str(socket_dir),
                             port=port, user=embedded.SUPERUSER, password=None, password_file=None)
    return dataclasses.replace(with_install(cfg), postgres=pg)


def with_install(cfg: Config) -> Config:
    """``cfg`` whose server programs (``backup.pg_bin``) are the Citus install's."""
    return dataclasses.replace(cfg, backup=dataclasses.replace(cfg.backup, pg_bin=citus_local.install_dir(cfg)))


def nodes(cfg: Config) -> list[ClusterNode]:
    """The running cluster's nodes, coordinator first (starting the cluster if it is down)."""
    if not is_cluster(cfg):
        raise ConfigError("not a Citus cluster profile (postgres: {embedded: true, citus: {workers: N}})")
    conn_params(cfg)  # starts the cluster, prepares the profile's database on every node
    found = []
    for node in citus_local.nodes(cfg):
        running = embedded.running(node.data_dir)
        if running is None:
            raise UnreachableError(f"the Citus {node.name} in {node.data_dir} is not running",
                                   hint="`dbcli local stop` then any command starts the whole cluster again")
        found.append(ClusterNode(node.data_dir.name, node_config(cfg, running.socket_dir, running.port),
                                 running.port, node.data_dir))
    return found


def ensure_archiving(cfg: Config, root: Path, cluster: list[ClusterNode]) -> None:
    """Every node archives into its area (``backup.wal: true``) and takes replication connections on
    its socket; ConfigError (exit 3) while a node must restart to apply it."""
    if not cfg.backup.wal:
        raise ConfigError("a physical backup of a Citus cluster needs WAL archiving on every node",
                          hint="set backup.wal: true (each node archives into <backup dir>/cluster/<node>/wal)")
    restart = []
    for node in cluster:
        allow_replication(node)
        if server.setup(node.cfg, node_root(root, node.name)).restart_needed:
            restart.append(node.name)
    if restart:
        raise ConfigError(f"WAL archiving of {', '.join(restart)} into {cluster_root(root)} is configured: "
                          "the nodes must restart to apply it",
                          hint="dbcli local stop (the next command starts the cluster with archiving on)")


def allow_replication(node: ClusterNode) -> None:
    """pg_basebackup's replication connection over the node's socket: the local cluster's pg_hba.conf
    trusts the socket for databases only ("all" does not match a replication connection)."""
    hba = node.data_dir / "pg_hba.conf"
    if any(line.split() == REPLICATION_HBA.split() for line in hba.read_text(encoding="utf-8").splitlines()):
        return
    with hba.open("a", encoding="utf-8") as fh:
        fh.write(f"# dbcli backup create --physical: pg_basebackup over the socket\n{REPLICATION_HBA}\n")
    with postgres.connect(node.cfg, autocommit=True) as conn, postgres.errors_translated(node.cfg):
        conn.execute("SELECT pg_reload_conf()")


# ---- restore points ----------------------------------------------------------------------------

def read_points(root: Path) -> list[dict[str, Any]]:
    """The recorded restore points, oldest first. A file dbcli did not write (edited, damaged) exits 8."""
    path = cluster_root(root) / POINTS
    if not path.is_file():
        return []
    try:
        points = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckFailedError(f"cannot read {path}: {e}") from None
    if not isinstance(points, list) or not all(
            isinstance(p, dict) and "name" in p and isinstance(p.get("nodes"), dict)
            and all(isinstance(at, dict) and "wal" in at for at in p["nodes"].values()) for p in points):
        raise CheckFailedError(f"{path} is not a list of restore points")
    return points


def read_backups(root: Path) -> list[dict[str, Any]]:
    """The cluster backups' manifests that can be read, oldest first (the others: unreadable_backups)."""
    found = [m for m in _manifests(root).values() if isinstance(m, dict)]
    return sorted(found, key=lambda m: (str(m.get("started_at")), str(m.get("id"))))


def unreadable_backups(root: Path) -> dict[str, str]:
    """{backup id: why} of the cluster manifests that cannot be read (damaged, or not dbcli's)."""
    return {name: m for name, m in _manifests(root).items() if isinstance(m, str)}


def _manifests(root: Path) -> dict[str, dict[str, Any] | str]:
    """Each cluster manifest by backup id: its content, or why it cannot be read."""
    directory = cluster_root(root) / BACKUPS
    found: dict[str, dict[str, Any] | str] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if path.name.startswith("."):  # a write in progress (atomic_write's temp file)
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            found[path.stem] = f"unreadable manifest: {e}"
            continue
        complete = isinstance(data, dict) and isinstance(data.get("nodes"), dict) and all(
            isinstance(part, dict) and "backup" in part and "size_bytes" in part for part in data["nodes"].values()) \
            and all(key in data for key in ("id", "started_at", "status", "restore_point"))
        found[path.stem] = data if complete else "manifest without its nodes, id, time, status or restore point"
    return found


def backup_path(root: Path, backup_id: str) -> Path:
    """The manifest of a cluster backup: the file whose presence makes the backup exist."""
    return cluster_root(root) / BACKUPS / f"{backup_id}.json"


def read_verification(root: Path, backup_id: str) -> dict[str, Any] | None:
    path = cluster_root(root) / BACKUPS / VERIFIED / f"{backup_id}.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def write_verification(root: Path, backup_id: str, record: dict[str, Any]) -> None:
    directory = backup_store.private_dir(cluster_root(root) / BACKUPS / VERIFIED)
    with atomic_write(directory / f"{backup_id}.json", private=True) as fh:
        json.dump(record, fh, indent=2, sort_keys=True)


def write_backup(root: Path, manifest: dict[str, Any]) -> None:
    directory = backup_store.private_dir(cluster_root(root) / BACKUPS)
    with atomic_write(directory / f"{manifest['id']}.json", private=True) as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)


def restore_point(cfg: Config, name: str, *, root: Path | str | None = None, clock: Clock = backup_store.utc_now,
                  ) -> dict[str, Any]:
    """``dbcli backup restore-point NAME``: a new named point every node can be recovered to."""
    where = local_root(cfg, root)
    cluster = nodes(cfg)
    with backup_store.locked(cluster_root(where), "backup restore-point", clock):
        record = create_point(cfg, where, cluster, name, backup=None)
    wait_archived(where, record)
    return point_row(where, record)


def create_point(cfg: Config, root: Path, cluster: list[ClusterNode], name: str,
                 backup: str | None) -> dict[str, Any]:
    """citus_create_restore_point, then each node's WAL switched so the point reaches its archive;
    recorded. The caller holds the cluster's lock."""
    if not NAME.match(name):
        raise UsageError(f"invalid restore point name {name!r} (letters, digits, '_', '.', ':', '-'; at most 63)")
    points = read_points(root)
    if any(p["name"] == name for p in points):
        # recovery stops at the first point of a name: a second one could never be reached
        raise ConflictError(f"restore point {name} already exists in {cluster_root(root)}")
    with postgres.connect(cfg, autocommit=True) as conn, postgres.errors_translated(cfg):
        row = conn.execute("SELECT citus_create_restore_point(%s)::text, now()", (name,)).fetchone()
    assert row is not None
    at_nodes = {}
    for node in cluster:
        with postgres.connect(node.cfg, autocommit=True) as conn, postgres.errors_translated(node.cfg):
            # the position after the point (the point is at or before it) and the segment holding it
            after = conn.execute("SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())"
                                 ).fetchone()
            conn.execute("SELECT pg_switch_wal()")
        assert after is not None
        at_nodes[node.name] = {"lsn": str(after[0]), "wal": str(after[1])}
    record = {"name": name, "time": iso(row[1]), "coordinator_lsn": str(row[0]), "backup": backup, "nodes": at_nodes}
    backup_store.private_dir(cluster_root(root))
    with atomic_write(cluster_root(root) / POINTS, private=True) as fh:
        json.dump([*points, record], fh, indent=2)
    return record


def archived(root: Path, record: dict[str, Any]) -> bool:
    """Is the segment holding the point archived on every node (can every node replay to it)?"""
    return all((wal_archive.wal_dir(node_root(root, name)) / str(at["wal"])).is_file()
               for name, at in record["nodes"].items())


def wait_archived(root: Path, record: dict[str, Any], timeout: float = ARCHIVE_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not archived(root, record):
        if time.monotonic() > deadline:
            missing = [n for n, at in record["nodes"].items()
                       if not (wal_archive.wal_dir(node_root(root, n)) / str(at["wal"])).is_file()]
            raise UnreachableError(f"restore point {record['name']} is recorded, but its WAL did not reach the "
                                   f"archive of {', '.join(missing)} within {timeout:.0f}s",
                                   hint="is archiving on? dbcli wal status; the node's log")
        time.sleep(0.2)


def point_row(root: Path, record: dict[str, Any]) -> dict[str, Any]:
    return {"name": record["name"], "time": record["time"], "backup": record.get("backup"),
            "coordinator_lsn": record["coordinator_lsn"], "archived": archived(root, record),
            "nodes": ",".join(record["nodes"])}
