"""Physical backup and point-in-time recovery of a local Citus cluster (issue 18, item 4): a base
backup per node, one citus_create_restore_point across the nodes, every node recovered to it.

A cluster of its own (archiving on every node changes its settings and needs a restart, which the
session's shared cluster must not see); a few rows only, for CI's time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbcli.backup.physical import cluster, cluster_restore
from dbcli.errors import NotFoundError
from dbcli.postgres import embedded
from tests.fix_citus import archiving_cluster_config
from tests.fix_citus import run_json as run
from tests.helpers import invoke, write_config

DB = "pitr"


@pytest.fixture(scope="module")
def cluster_config(citus_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with archiving_cluster_config(citus_install, tmp_path_factory.mktemp("cpitr"), DB) as config:
        yield config


def insert(config: Path, first: int, last: int) -> None:
    bounds = ["--param", f"first={first}", "--param", f"last={last}"]
    run(config, "sql", "INSERT INTO items SELECT g, g %% 7 FROM generate_series(%(first)s::int, %(last)s::int) g",
        *bounds, "--write")
    run(config, "sql", "INSERT INTO kinds SELECT g FROM generate_series(%(first)s::int, %(last)s::int) g",
        *bounds, "--write")


def counts(config: Path) -> tuple[int, int]:
    rows = run(config, "sql", "SELECT (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM kinds) AS kinds")
    return int(rows[0]["items"]), int(rows[0]["kinds"])


def restored_config(directory: Path, install: Path) -> Path:
    """The profile the restore prints: the restored nodes as a local cluster."""
    return write_config(directory.parent / f"{directory.name}.yaml", {"profiles": {"r": {
        "postgres": {"embedded": True, "dbname": DB, "data_dir": str(directory),
                     "citus": {"workers": 2, "install": str(install)}}}}, "default_profile": "r"})


def stop_all(directory: Path) -> None:
    for name in ("coordinator", "worker-1", "worker-2"):
        embedded.stop(directory / name)


def test_cluster_backup_restore_point_and_recovery(cluster_config: Path, citus_install: Path, tmp_path: Path) -> None:
    config = cluster_config
    run(config, "sql", "CREATE TABLE items (id int, user_id int)", "--write")
    run(config, "sql", "SELECT create_distributed_table('items', 'user_id')", "--write")
    run(config, "sql", "CREATE TABLE kinds (id int PRIMARY KEY)", "--write")
    run(config, "sql", "SELECT create_reference_table('kinds')", "--write")
    insert(config, 1, 10)  # A

    # archiving is configured on every node; the nodes must restart to apply it: one line, exit 3
    refused = run(config, "backup", "create", "--physical", code=3)
    assert "must restart" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert invoke(["--config", str(config), "local", "stop"]).exit_code == 0

    created = run(config, "backup", "create", "--physical")
    assert created["kind"] == "physical-cluster" and created["restore_point"] == created["id"]
    assert created["nodes"].count("=") == 3
    insert(config, 11, 20)  # B
    point = run(config, "backup", "restore-point", "before-c")
    assert point["archived"] is True and point["nodes"] == "coordinator,worker-1,worker-2"
    assert run(config, "backup", "restore-point", "before-c", code=7).exit_code == 7
    insert(config, 21, 30)  # C
    run(config, "backup", "restore-point", "after-c")

    listed = {r["id"]: r for r in run(config, "backup", "list")}
    assert f"restore points {created['id']} .. after-c (3)" == listed[created["id"]]["recovers_to"]
    status = run(config, "wal", "status")
    assert status["restore_points"] == 3 and status["newest_restorable_point"] == "after-c"
    assert status["cluster_archives"].startswith("coordinator: ")

    # restore to the point between B and C: A+B, not C, through the coordinator
    first = tmp_path / "to-point"
    restored = run(config, "backup", "restore", "--physical", "--to-restore-point", "before-c",
                   "--data-dir", str(first))
    assert restored["restore_point"] == "before-c" and restored["workers_active"] == 2
    assert f"{DB}.items=20" in restored["counts"] and f"{DB}.kinds=20" in restored["counts"]
    assert sorted(p.name for p in first.iterdir()) == ["coordinator", "superuser-password", "worker-1", "worker-2"]
    again = restored_config(first, citus_install)
    try:
        assert counts(again) == (20, 20)
        run(again, "ping")  # exit 4 if a worker did not answer
        # the restored cluster is its own: a write there does not reach the original
        run(again, "sql", "INSERT INTO items VALUES (1000, 1)", "--write")
        assert counts(config) == (30, 30)
    finally:
        stop_all(first)

    # --latest: the newest restore point whose WAL every node has archived
    second = tmp_path / "latest"
    latest = run(config, "backup", "restore", "--physical", "--latest", "--data-dir", str(second))
    assert latest["restore_point"] == "after-c"
    assert f"{DB}.items=30" in latest["counts"] and f"{DB}.kinds=30" in latest["counts"]


def test_unknown_restore_point_is_one_line_exit_6(cluster_config: Path, tmp_path: Path) -> None:
    result = run(cluster_config, "backup", "restore", "--physical", "--to-restore-point", "no-such-point",
                 "--data-dir", str(tmp_path / "x"), code=6)
    assert "no restore point 'no-such-point'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_time_target_is_the_newest_archived_point_at_or_before_it(tmp_path: Path) -> None:
    """--to-time picks a restore point, never a time per node; a point not archived everywhere is skipped."""
    def point(name: str, time: str, segment: str) -> dict[str, Any]:
        return {"name": name, "time": time, "coordinator_lsn": "0/1", "backup": None,
                "nodes": {"coordinator": {"lsn": "0/1", "wal": segment}, "worker-1": {"lsn": "0/1", "wal": segment}}}

    points = [point("p1", "2026-12-07T10:00:00Z", "000000010000000000000001"),
              point("p2", "2026-12-07T11:00:00Z", "000000010000000000000002"),
              point("p3", "2026-12-07T12:00:00Z", "000000010000000000000003")]
    for node in ("coordinator", "worker-1"):
        wal = cluster.node_root(tmp_path, node) / "wal"
        wal.mkdir(parents=True)
        for segment in ("000000010000000000000001", "000000010000000000000002"):
            (wal / segment).write_bytes(b"")
    (cluster.node_root(tmp_path, "coordinator") / "wal" / "000000010000000000000003").write_bytes(b"")
    assert cluster_restore.choose_point(tmp_path, points, None, "2026-12-07T11:30:00Z", False)["name"] == "p2"
    assert cluster_restore.choose_point(tmp_path, points, None, "2026-12-07T11:00:00", False)["name"] == "p2"
    assert cluster_restore.choose_point(tmp_path, points, None, None, True)["name"] == "p2"  # p3: worker-1 lacks it
    with pytest.raises(NotFoundError, match="at or before"):
        cluster_restore.choose_point(tmp_path, points, None, "2026-12-07T09:00:00Z", False)
