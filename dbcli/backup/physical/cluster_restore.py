"""``backup restore --physical`` of a Citus cluster backup: every node recovered to ONE restore point.

Each node's base backup is restored by recover.py into ``DIR/<node>`` (coordinator, worker-1, ...)
with ``recovery_target_name``: the same named point on every node is what makes the nodes consistent
with each other. A time target cannot be (each node would stop at its own last commit before it), so
``--to-time TS`` means the newest restore point at or before TS, and ``--latest`` the newest point
whose WAL every node has archived.

The restored nodes then start on free 127.0.0.1 ports; the coordinator's pg_dist_node is pointed at
them (citus_update_node, in one transaction; Citus syncs it to the workers), the cluster is pinged
and its tables counted through the coordinator, and the nodes are stopped. Until pg_dist_node is
updated, the restored nodes hold the original cluster's addresses and password: they run with
Citus's background work that reaches other nodes (2PC recovery, shard clean-up, deadlock detection,
background tasks) off, so a restored copy never touches the live cluster. ``DIR`` is then the data
dir of a profile ``postgres: {embedded: true, data_dir: DIR, citus: {workers: N}}``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbcli.backup import store as backup_store
from dbcli.backup.physical import cluster, recover, tools
from dbcli.backup.stages import Progress, quiet
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, NotFoundError, UsageError
from dbcli.postgres import citus, citus_local, embedded
from dbcli.servers import registry

# Citus's background work that connects to other nodes: off until the nodes know their new addresses
ISOLATED = {"citus.recover_2pc_interval": "-1", "citus.defer_shard_delete_interval": "-1",
            "citus.distributed_deadlock_detection_factor": "-1", "citus.background_task_queue_interval": "-1",
            "citus.metadata_sync_interval": "'7d'", "citus.metadata_sync_retry_interval": "'7d'"}
START_TIMEOUT = 120
SYNC_TIMEOUT = 60.0  # the maintenance daemon syncs pg_dist_node to the workers (retries every 5 s)


def restore(cfg: Config, *, data_dir: Path, root: Path | str | None = None, backup_id: str | None = None,
            to_point: str | None = None, to_time: str | None = None, latest: bool = False,
            progress: Progress = quiet) -> dict[str, Any]:
    """Restore every node of a cluster backup into ``data_dir/<node>``, recovered to one restore point."""
    if sum((to_point is not None, to_time is not None, latest)) != 1:
        raise UsageError("give exactly one of --to-restore-point, --to-time, --latest for a cluster")
    where = cluster.local_root(cfg, root)
    points = cluster.read_points(where)
    point = choose_point(where, points, to_point, to_time, latest)
    manifest = choose_backup(where, points, point, backup_id)
    data_dir = data_dir.expanduser().absolute()
    created = check_target(data_dir)
    install = citus_local.install_dir(cfg)
    restored: list[Path] = []
    try:
        for name, part in manifest["nodes"].items():
            progress(f"{name}: {part['backup']} to restore point {point['name']}")
            recover.restore(cluster.with_install(cfg), data_dir=data_dir / name,
                            root=cluster.node_root(where, name), backup_id=part["backup"], to_name=point["name"],
                            settings=tuple(f"{k} = {v}" for k, v in ISOLATED.items()), progress=progress)
            restored.append(data_dir / name)
        shutil.copy2(citus_local.password_file(cfg), data_dir / citus_local.PASSWORD_FILE)
        old_ports = {name: int(part["port"]) for name, part in manifest["nodes"].items()}
        checked = run_checked(data_dir, install, old_ports, progress)
    except BaseException:
        for directory in restored:
            shutil.rmtree(directory, ignore_errors=True)
        (data_dir / citus_local.PASSWORD_FILE).unlink(missing_ok=True)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    workers = len(manifest["nodes"]) - 1
    return {"data_dir": str(data_dir), "backup": manifest["id"], "restore_point": point["name"],
            "point_time": point["time"], "nodes": ",".join(manifest["nodes"]), **checked,
            "profile": f"postgres: {{embedded: true, data_dir: {data_dir}, citus: {{workers: {workers}}}}}"}


def choose_point(root: Path, points: list[dict[str, Any]], name: str | None, to_time: str | None,
                 latest: bool) -> dict[str, Any]:
    where = cluster.cluster_root(root)
    if name is not None:
        found = [p for p in points if p["name"] == name]
        if not found:
            raise NotFoundError(f"no restore point {name!r} in {where}",
                                hint="dbcli backup list shows the cluster's restore points")
        return found[0]
    ready = [p for p in points if cluster.archived(root, p)]
    if to_time is not None:
        when = recover.parse_time(to_time)
        ready = [p for p in ready if backup_store.parse_iso(p["time"]) <= when]
    if not ready:
        at = f" at or before {to_time}" if to_time else ""
        raise NotFoundError(f"no restore point{at} in {where} with its WAL archived on every node",
                            hint="dbcli backup restore-point NAME creates one")
    return ready[-1]


def choose_backup(root: Path, points: list[dict[str, Any]], point: dict[str, Any],
                  backup_id: str | None) -> dict[str, Any]:
    """The given cluster backup, else the newest one whose own restore point is not after ``point``."""
    order = [p["name"] for p in points]
    backups = cluster.read_backups(root)
    if backup_id and backup_id != "latest":
        backups = [m for m in backups if m["id"] == backup_id]
        if not backups:
            raise NotFoundError(f"no cluster backup {backup_id} in {cluster.cluster_root(root)}")
    usable = [m for m in backups if m.get("restore_point") in order
              and order.index(m["restore_point"]) <= order.index(point["name"])]
    if not usable:
        raise NotFoundError(f"no cluster backup in {cluster.cluster_root(root)} was taken before restore point "
                            f"{point['name']}", hint="a backup can only be recovered forward: pick a later point")
    return usable[-1]


def check_target(data_dir: Path) -> bool:
    """ConfigError (exit 3) unless ``data_dir`` is new or empty; True when this restore creates it."""
    if embedded.running(data_dir) is not None or (data_dir / "postmaster.pid").exists():
        raise ConfigError(f"{data_dir} belongs to a running server: restore into a new directory")
    if data_dir.exists():
        if not data_dir.is_dir() or any(data_dir.iterdir()):
            raise ConfigError(f"{data_dir} is not empty: restore into a new (or empty) directory")
        return False
    if not data_dir.parent.is_dir():
        raise ConfigError(f"no directory {data_dir.parent} to restore into")
    backup_store.private_dir(data_dir)
    return True


def run_checked(data_dir: Path, install: Path, old_ports: dict[str, int], progress: Progress) -> dict[str, Any]:
    """Start the restored nodes on new ports, point the metadata at them, check, stop them."""
    names = list(old_ports)
    ports: dict[str, int] = {}
    for name in names:
        port = citus_local.free_port()
        while port in old_ports.values() or port in ports.values():
            port = citus_local.free_port()
        ports[name] = port
    started: list[Path] = []
    try:
        for name in reversed(names):  # the workers first: the coordinator reaches them once they answer
            node = citus_local.Node("coordinator" if name == "coordinator" else "worker", 0, data_dir / name)
            configure(node, ports[name])
            progress(f"{name}: starting on port {ports[name]}")
            start(install, node.data_dir)
            started.append(node.data_dir)
        servers = {name: embedded.running(data_dir / name) for name in names}
        if any(server is None for server in servers.values()):
            raise CheckFailedError(f"a restored node in {data_dir} stopped after starting")
        running = {name: server for name, server in servers.items() if server is not None}
        databases = relink(running, old_ports)
        for directory in started:
            isolate_off(directory)
        return check(running["coordinator"], databases)
    finally:
        for directory in started:
            stop(install, directory)


def configure(node: citus_local.Node, port: int) -> None:
    """The node's own address from now on (after what the backup and the recovery wrote)."""
    lines = ["", "# dbcli backup restore --physical: this node of the restored cluster",
             f"port = {port}", f"listen_addresses = '{citus_local.HOST}'",
             f"unix_socket_directories = '{citus_local.socket_dir(node)}'"]
    with open(node.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def start(install: Path, directory: Path) -> None:
    owner = tools.owner_of(directory) or tools.server_owner()
    tools.run("pg_ctl", [str(install / "pg_ctl"), "-D", str(directory), "-w", "-t", str(START_TIMEOUT), "-l",
                         str(directory / "log"), "start"], timeout=START_TIMEOUT + 30, owner=owner)
    registry.note("postgres", directory)  # `dbcli local status` lists it


def stop(install: Path, directory: Path) -> None:
    if (directory / "postmaster.pid").exists():
        tools.run("pg_ctl", [str(install / "pg_ctl"), "-D", str(directory), "-w", "-t", "120", "-m", "fast", "stop"],
                  timeout=180, owner=tools.owner_of(directory) or tools.server_owner())


def connect(server: embedded.RunningServer, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(**server.conninfo(dbname), connect_timeout="10"), autocommit=True)


def citus_databases(server: embedded.RunningServer) -> list[str]:
    with connect(server) as conn:
        names = [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn"
                                                 " AND NOT datistemplate ORDER BY 1").fetchall()]
    found = []
    for name in names:
        with connect(server, name) as conn:
            if citus.version(conn) is not None:
                found.append(name)
    return found


def relink(servers: dict[str, embedded.RunningServer], old_ports: dict[str, int]) -> list[str]:
    """In each Citus database: every node's pg_dist_poolinfo to the new sockets, then the coordinator's
    pg_dist_node to the new ports (one transaction, and only then synced to the workers: a sync in
    between would go to the other workers' old addresses); the databases."""
    coordinator = servers["coordinator"]
    by_old = {old_ports[name]: server.port for name, server in servers.items()}
    databases = citus_databases(coordinator)
    for name in databases:
        with connect(coordinator, name) as conn:
            ids = {int(r[1]): int(r[0]) for r in conn.execute("SELECT nodeid, nodeport FROM pg_dist_node").fetchall()}
        # the copy's poolinfo names the original nodes' sockets, which trust the servers' user
        sockets = [(ids[old_ports[n]], make_conninfo(host=str(s.socket_dir))) for n, s in servers.items()
                   if old_ports[n] in ids]
        for server in servers.values():
            with connect(server, name) as conn:
                citus_local.node_sockets(conn, sockets)
        with connect(coordinator, name) as conn:
            with conn.transaction():
                # citus_update_node changes this node's catalog only (the coordinator's entry too):
                # citus_set_coordinator_host would tell the workers at once, at their old addresses
                rows = conn.execute("SELECT nodeid, nodeport FROM pg_dist_node ORDER BY nodeid").fetchall()
                for nodeid, port in rows:
                    new = by_old.get(int(port))
                    if new is None:
                        raise CheckFailedError(f"pg_dist_node of {name} lists port {port}, not a node of the backup")
                    conn.execute("SELECT citus_update_node(%s, %s, %s)", (nodeid, citus_local.HOST, new))
            # the workers' copy of the metadata, now, not whenever the maintenance daemon gets to it
            conn.execute("SELECT start_metadata_sync_to_all_nodes()")
            deadline = time.monotonic() + SYNC_TIMEOUT
            while conn.execute("SELECT count(*) FROM pg_dist_node WHERE hasmetadata AND NOT metadatasynced"
                               " AND groupid <> 0").fetchone() != (0,):
                if time.monotonic() > deadline:
                    raise CheckFailedError(f"the workers' metadata of {name} was not synced within {SYNC_TIMEOUT:.0f}s")
                time.sleep(0.2)
    return databases


def isolate_off(directory: Path) -> None:
    running = embedded.running(directory)
    assert running is not None
    with connect(running) as conn:
        for name in ISOLATED:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")


def check(coordinator: embedded.RunningServer, databases: list[str]) -> dict[str, Any]:
    """Every worker answers the coordinator; the rows of each Citus table, counted through it."""
    counts: dict[str, int] = {}
    workers = 0
    for name in databases:
        with connect(coordinator, name) as conn:
            found = citus.cluster(conn, 10.0)
            assert found is not None
            down = [w.address for w in found.workers if not w.ok]
            if down:
                raise CheckFailedError(f"restored worker {down[0]} does not answer the coordinator ({name})")
            workers = max(workers, found.active)
            for table, _kind, _column in citus.distributed_tables(conn):
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
                                   ).fetchone()
                counts[f"{name}.{table}"] = int(row[0]) if row else 0
    return {"workers_active": workers, "tables": len(counts), "rows": sum(counts.values()),
            "counts": ", ".join(f"{t}={n}" for t, n in sorted(counts.items()))}
