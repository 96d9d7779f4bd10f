"""The local servers (the embedded PostgreSQL or the nodes of a local Citus cluster, a local
mongod/FerretDB): status and stop.

The profile's own servers first, then every other server dbcli started on this machine that still
runs (from ``servers.registry``; notes of servers that stopped are removed on the way).
Reads pid files and sockets only: no database driver is imported, so ``dbcli local status`` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcli.config.model import Config
from dbcli.mongo import embedded as local_mongo
from dbcli.postgres import citus_local
from dbcli.postgres import embedded as local_pg
from dbcli.servers import registry

COLUMNS = ["server", "state", "pid", "address", "data_dir", "version", "in_profile"]


@dataclass(frozen=True)
class Stopped:
    server: str
    data_dir: Path
    was_running: bool
    in_profile: bool


def own(cfg: Config) -> list[registry.Noted]:
    """The profile's local servers, running or not."""
    found: list[registry.Noted] = []
    if citus_local.enabled(cfg):
        found.extend(registry.Noted("postgres", node.data_dir) for node in citus_local.nodes(cfg))
    elif cfg.postgres.embedded:
        found.append(registry.Noted("postgres", Path(cfg.postgres.data_dir)))
    mg_dir = Path(cfg.mongo.data_dir)
    if cfg.mongo.embedded or local_mongo.running(mg_dir):  # `dbcli demo` may have started one
        found.append(registry.Noted("mongo", mg_dir))
    return found


def others(cfg: Config) -> list[registry.Noted]:
    """Servers dbcli started that run, but not on this profile's data dirs."""
    mine = {(n.server, registry.canonical(n.data_dir)) for n in own(cfg)}
    found = []
    for item in registry.noted():
        if (item.server, registry.canonical(item.data_dir)) in mine:
            continue
        if _running(item) is None:
            registry.forget(item.server, item.data_dir)  # prune: it stopped or died
            continue
        found.append(item)
    return found


def status(cfg: Config) -> list[dict[str, Any]]:
    """One row per server: the profile's (running or stopped), then the others still running."""
    labels = _labels(cfg)
    return ([_row(item, in_profile=True, label=labels.get(item.data_dir)) for item in own(cfg)]
            + [_row(item, in_profile=False) for item in others(cfg)])


def stop(cfg: Config, *, everything: bool = False) -> list[Stopped]:
    """Stop the profile's local servers (``everything``: and every other one dbcli started)."""
    labels = _labels(cfg)
    # a cluster's workers first: the coordinator is what dbcli looks at to decide to start it again
    done = [Stopped(labels.get(n.data_dir, n.server), n.data_dir, _stop(n), True) for n in reversed(own(cfg))][::-1]
    if everything:
        done += [Stopped(n.server, n.data_dir, _stop(n), False) for n in others(cfg)]
    return done


def _labels(cfg: Config) -> dict[Path, str]:
    """The nodes of the profile's local Citus cluster: ``citus coordinator``, ``citus worker 1``..."""
    if not citus_local.enabled(cfg):
        return {}
    return {node.data_dir: f"citus {node.name}" for node in citus_local.nodes(cfg)}


def _running(item: registry.Noted) -> local_pg.RunningServer | local_mongo.LocalMongo | None:
    return local_pg.running(item.data_dir) if item.server == "postgres" else local_mongo.running(item.data_dir)


def _stop(item: registry.Noted) -> bool:
    return local_pg.stop(item.data_dir) if item.server == "postgres" else local_mongo.stop(item.data_dir)


def _row(item: registry.Noted, *, in_profile: bool, label: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"server": label or item.server, "state": "stopped", "pid": None, "address": None,
                           "data_dir": str(item.data_dir), "version": None, "in_profile": in_profile}
    if item.server == "postgres":
        pg = local_pg.running(item.data_dir)
        v = local_pg.version(item.data_dir)
        row["version"] = f"PostgreSQL {v}" if v else None
        if pg:
            row.update(state="running", pid=pg.pid, address=f"{pg.socket_dir}/.s.PGSQL.{pg.port}")
    else:
        mg = local_mongo.running(item.data_dir)
        if mg:
            row.update(state="running", pid=mg.pid, address=mg.uri, version=f"{mg.kind} ({mg.binary})")
    return row
