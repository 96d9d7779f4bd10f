"""``backup verify`` of a Citus cluster backup (``<repository>/cluster/backups/<id>.json``).

A cluster backup restores only as a whole: every node's base backup, recovered to the backup's own
restore point with that node's archived WAL. So the checks are: the manifest lists every node the
restore point was written on (coordinator included); each node's base backup is checked as a single
server's is (its files against dbcli's manifest, then pg_verifybackup, check.py); each node's archive
holds every segment from its backup's start to the segment holding the restore point. With
``--restore-test`` the backup is restored by cluster_restore (every node to its point, started,
re-linked, counted, stopped) into a scratch directory beside the repository, then removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbcli.backup import store as backup_store
from dbcli.backup.physical import check as physical_check
from dbcli.backup.physical import cluster, cluster_prune, cluster_restore, tools
from dbcli.backup.physical import wal as wal_archive
from dbcli.backup.stages import Progress
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError, NotFoundError, UnreachableError
from dbcli.postgres import citus_local

Add = Callable[[str, str, bool, str], None]
Skip = Callable[[str, str, DbcliError], None]
CheckFiles = Callable[[BackupInfo], bool]  # the caller's checksum check of one node's backup files: all good?
SCRATCH = ".restore-test-cluster-"  # + the pid of the verify run + a random part


def find(root: Path, backup_id: str | None, latest: bool) -> BackupInfo | None:
    """The cluster backup named ``backup_id`` (``latest``: the newest complete one); None if none is.
    One whose manifest cannot be read is found with ``manifest`` None and the ``problem``."""
    backups = cluster_prune.backups(root) if cluster_prune.present(root) else []
    if latest or backup_id == "latest":
        complete = [b for b in backups if b.status == "ok"]
        return complete[-1] if complete else None
    return next((b for b in backups if b.id == backup_id), None)


def check(cfg: Config, root: Path, manifest: dict[str, Any], *, add: Add, skip: Skip, check_files: CheckFiles,
          progress: Progress) -> None:
    """Every check but the restore test (``run_restore_test``, for a backup none of these failed)."""
    backup_id = str(manifest["id"])
    if manifest.get("status") != "ok":
        add("status", backup_id, False, f"status is {manifest.get('status')}")
        return
    point = check_nodes(root, manifest, add)
    node_cfg = tools_config(cfg)
    for name, part in manifest["nodes"].items():
        node_root = cluster.node_root(root, name)
        try:
            info = backup_store.find_backup(node_root, str(part["backup"]))
        except NotFoundError as e:
            add("node-backup", f"{name}/{part['backup']}", False, e.message)
            continue
        if info.manifest is None:
            add("node-backup", f"{name}/{info.id}", False, str(info.problem))
            continue
        progress(f"{name}: verifying checksums of {info.id}")
        # pg_verifybackup of files already known to be damaged would only say it again
        if check_files(dataclasses.replace(info, id=f"{name}/{info.id}")):
            physical_check.check(node_cfg, node_root, info, restore_test=False, add=prefixed(add, name),
                                 skip=prefixed_skip(skip, name), progress=progress)
        if point is not None:
            check_wal(node_root, name, info, point, add)


def check_nodes(root: Path, manifest: dict[str, Any], add: Add) -> dict[str, Any] | None:
    """The restore point is recorded and the manifest names every node it was written on; the point."""
    name = manifest.get("restore_point")
    point = next((p for p in cluster.read_points(root) if p["name"] == name), None)
    if point is None:
        add("restore-point", str(name), False, f"not recorded in {cluster.cluster_root(root) / cluster.POINTS}")
        return None
    listed, written = set(manifest.get("nodes") or {}), set(point["nodes"])
    missing = sorted(written - listed) + ([] if "coordinator" in listed | written else ["coordinator"])
    if missing:
        add("nodes", str(manifest["id"]), False, f"no backup of {', '.join(missing)} in the cluster manifest")
    elif listed - written:
        add("nodes", str(manifest["id"]), False,
            f"restore point {name} was not written on {', '.join(sorted(listed - written))}")
    else:
        add("nodes", str(manifest["id"]), True, ", ".join(manifest["nodes"]))
    return point


def check_wal(node_root: Path, name: str, info: BackupInfo, point: dict[str, Any], add: Add) -> None:
    """Every segment from the node backup's start to the one holding the restore point is archived."""
    at = point["nodes"].get(name)
    if at is None:
        return  # said by check_nodes
    start, end = ((info.manifest or {}).get("physical") or {}).get("start_wal"), str(at["wal"])
    if not start:
        add("wal", f"{name}/{info.id}", False, "the node backup's manifest names no start segment")
        return
    subject = f"{name}/wal {start}..{end}"
    run = wal_archive.reachable(wal_archive.segments(node_root), start)
    if run is None:
        add("wal", subject, False, f"segment {start} (the backup's start) is not archived")
    elif wal_archive.segment_number(run.last)[1] < wal_archive.segment_number(end)[1]:
        add("wal", subject, False, f"the segment after {run.last} is not archived (restore point {point['name']} "
            f"is in {end})")
    else:
        add("wal", subject, True, "")


def run_restore_test(cfg: Config, root: Path, manifest: dict[str, Any], add: Add, skip: Skip,
                     progress: Progress) -> None:
    subject = f"cluster {manifest['id']}"
    clean_scratch(cfg, root)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-", dir=root))
    progress(f"restore test of {manifest['id']} (every node to restore point {manifest['restore_point']})")
    try:
        done = cluster_restore.restore(cfg, data_dir=scratch / "data", root=root, backup_id=str(manifest["id"]),
                                       to_point=str(manifest["restore_point"]), progress=progress)
        add("restore-test", subject, True, f"{done['workers_active']} workers, {done['tables']} tables, "
            f"{done['rows']} rows")
    except (UnreachableError, ConfigError) as e:
        skip("restore-test", subject, e)
    except DbcliError as e:
        add("restore-test", subject, False, e.message)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def clean_scratch(cfg: Config, root: Path) -> None:
    """Remove what restore tests of killed verify runs left, stopping the nodes a run killed while
    they were up left running; a running verify's scratch stays."""
    for leftover in root.glob(f"{SCRATCH}*"):
        pid = leftover.name[len(SCRATCH):].split("-")[0]
        if not pid.isdigit() or tools.pid_alive(int(pid)):
            continue
        with contextlib.suppress(DbcliError):
            install = citus_local.install_dir(cfg)
            for node in (leftover / "data").glob("*/postmaster.pid"):
                with contextlib.suppress(DbcliError):
                    cluster_restore.stop(install, node.parent)
        shutil.rmtree(leftover, ignore_errors=True)


def tools_config(cfg: Config) -> Config:
    """pg_verifybackup of the Citus install when the profile is the cluster's, else ``backup.pg_bin``."""
    try:
        return cluster.with_install(cfg) if cluster.is_cluster(cfg) else cfg
    except ConfigError:
        return cfg


def prefixed(add: Add, name: str) -> Add:
    return lambda check_, subject, ok, detail: add(check_, f"{name}/{subject}", ok, detail)


def prefixed_skip(skip: Skip, name: str) -> Skip:
    return lambda check_, subject, cause: skip(check_, f"{name}/{subject}", cause)
