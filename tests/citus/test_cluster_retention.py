"""`backup verify` and `backup prune` of a Citus cluster's physical backups (issue 18, item 4): a cluster
backup is verified node by node (files, pg_verifybackup, the WAL up to its restore point) and pruned
as a whole (its manifest, then every node's backup, then the WAL and restore points no kept backup
needs).

A cluster of its own, with archiving (a restart the session's shared cluster must not see)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcli.backup import store as backup_store
from dbcli.backup.physical import cluster
from dbcli.backup.physical import wal as wal_archive
from dbcli.config.load import load_config
from tests.fix_citus import archiving_cluster_config
from tests.fix_citus import run_json as run
from tests.helpers import invoke, write_config

DB = "retain"
NODES = ("coordinator", "worker-1", "worker-2")


@pytest.fixture(scope="module")
def cluster_config(citus_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with archiving_cluster_config(citus_install, tmp_path_factory.mktemp("cretain"), DB) as config:
        yield config


def insert(config: Path, first: int, last: int) -> None:
    run(config, "sql", "INSERT INTO items SELECT g, g %% 7 FROM generate_series(%(first)s::int, %(last)s::int) g",
        "--param", f"first={first}", "--param", f"last={last}", "--write")


def repo_of(config: Path) -> Path:
    return Path(load_config(str(config)).backup.dir or "")


def node_start(repo: Path, node: str, backup_id: str) -> str:
    return str(backup_store.read_manifest(cluster.node_root(repo, node) / backup_id)["physical"]["start_wal"])


def failed_once(config: Path, backup_id: str, expected: str) -> None:
    """verify exits 8 with one line naming what is damaged."""
    result = run(config, "backup", "verify", backup_id, code=8)
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cluster_backups_are_verified_and_pruned_as_whole_units(cluster_config: Path) -> None:
    config = cluster_config
    repo = repo_of(config)
    run(config, "sql", "CREATE TABLE items (id int, user_id int)", "--write")
    run(config, "sql", "SELECT create_distributed_table('items', 'user_id')", "--write")
    insert(config, 1, 10)
    run(config, "backup", "create", "--physical", code=3)  # archiving configured: the nodes must restart
    assert invoke(["--config", str(config), "local", "stop"]).exit_code == 0
    old = run(config, "backup", "create", "--physical")
    insert(config, 11, 20)
    run(config, "backup", "restore-point", "between")
    new = run(config, "backup", "create", "--physical")
    old_parts = {n.split("=")[0]: n.split("=")[1] for n in old["nodes"].split(",")}
    new_parts = {n.split("=")[0]: n.split("=")[1] for n in new["nodes"].split(",")}

    # a good backup: every node's files, pg_verifybackup and WAL up to its restore point
    checks = run(config, "backup", "verify", "--latest")
    assert {c["check"] for c in checks} >= {"nodes", "checksum", "pg_verifybackup", "wal"}
    assert all(c["ok"] for c in checks)
    assert sum(1 for c in checks if c["check"] == "wal") == 3
    listed = {r["id"]: r for r in run(config, "backup", "list")}
    assert listed[new["id"]]["verified"].startswith("ok ")

    # a damaged file of one node's backup: exit 8, recorded
    tar = next((cluster.node_root(repo, "worker-1") / new_parts["worker-1"] / "base").glob("base.tar*"))
    data = tar.read_bytes()
    tar.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    failed_once(config, new["id"], "checksum mismatch")
    assert {r["id"]: r for r in run(config, "backup", "list")}[new["id"]]["verified"].startswith("FAILED ")
    tar.write_bytes(data)

    # a WAL segment the backup needs to reach its restore point, gone from one node's archive
    start = node_start(repo, "worker-2", new_parts["worker-2"])
    segment = cluster.node_root(repo, "worker-2") / "wal" / start
    aside = segment.with_name("aside")
    segment.rename(aside)
    failed_once(config, new["id"], f"{start} (the backup's start) is not archived")
    aside.rename(segment)
    run(config, "backup", "verify", new["id"])

    # prune keeping 1: the dry run removes nothing; the real one the whole older backup
    planned = {r["id"]: r for r in run(config, "backup", "prune", "--keep-last", "1", "--dry-run")}
    assert planned[old["id"]]["action"] == "remove" and planned[new["id"]]["action"] == "keep"
    assert cluster.backup_path(repo, old["id"]).is_file()
    pruned = {r["id"]: r for r in run(config, "backup", "prune", "--keep-last", "1")}
    assert pruned[old["id"]]["action"] == "remove" and pruned[old["id"]]["reasons"].startswith("cluster backup")
    assert not cluster.backup_path(repo, old["id"]).exists()
    for node in NODES:
        area = cluster.node_root(repo, node)
        assert not (area / old_parts[node]).exists() and (area / new_parts[node]).is_dir()
        first = node_start(repo, node, new_parts[node])
        left = wal_archive.segments(area)
        assert left and left[0] == first, (node, left[:3], first)
    assert [p["name"] for p in cluster.read_points(repo)] == [new["id"]]  # "between" no kept backup reaches
    assert [r["id"] for r in run(config, "backup", "list")] == [new["id"]]

    # the kept backup still restores to its point: every node, started, re-linked and counted
    checks = run(config, "backup", "verify", new["id"], "--restore-test")
    tested = [c for c in checks if c["check"] == "restore-test"]
    assert tested and tested[0]["ok"] and "20 rows" in tested[0]["detail"], tested
    assert not list(repo.glob(".restore-test-*"))


def test_a_tampered_cluster_manifest_is_left_alone(tmp_path: Path) -> None:
    """A manifest naming a path outside the cluster's areas is never followed by prune: exit 8."""
    backups = cluster.cluster_root(tmp_path) / cluster.BACKUPS
    backups.mkdir(parents=True)
    manifest = {"id": "20261207T020000Z-c", "status": "ok", "started_at": "2026-12-07T02:00:00Z",
                "restore_point": "20261207T020000Z-c", "nodes": {"coordinator": {"backup": "../../precious"}}}
    (backups / "20261207T020000Z-c.json").write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "precious").mkdir()
    config = write_config(tmp_path / "dbcli.yaml", {"profiles": {"p": {"backup": {"dir": str(tmp_path)}}},
                                                    "default_profile": "p"})
    result = run(config, "backup", "prune", "--keep-last", "1", code=8)
    assert "left alone" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "precious").is_dir() and (backups / "20261207T020000Z-c.json").is_file()


def test_an_unreadable_cluster_manifest_fails_verification(tmp_path: Path) -> None:
    backups = cluster.cluster_root(tmp_path) / cluster.BACKUPS
    backups.mkdir(parents=True)
    (backups / "20261207T020000Z-c.json").write_text("{not json", encoding="utf-8")
    config = write_config(tmp_path / "dbcli.yaml", {"profiles": {"p": {"backup": {"dir": str(tmp_path)}}},
                                                    "default_profile": "p"})
    result = run(config, "backup", "verify", "20261207T020000Z-c", code=8)
    assert "unreadable cluster manifest" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # left alone by prune, and then nothing of the cluster is removed
    pruned = run(config, "backup", "prune", "--keep-last", "1")
    assert pruned[0]["action"] == "keep" and "left alone" in pruned[0]["reasons"]
    assert (backups / "20261207T020000Z-c.json").is_file()
    # listed as damaged, with the reason, instead of a traceback; restore does not pick it
    listed = run(config, "backup", "list")
    assert [(r["id"], r["status"]) for r in listed] == [("20261207T020000Z-c", "damaged")]
    assert listed[0]["verified"].startswith("unreadable manifest")
    # a restore-points file that is not dbcli's: one line, exit 8
    (backups.parent / cluster.POINTS).write_text("[1, 2]", encoding="utf-8")
    broken = invoke(["--config", str(config), "backup", "list"])
    assert broken.exit_code == 8 and broken.stderr.count("\n") == 1, broken.stderr
    assert "is not a list of restore points" in broken.stderr
