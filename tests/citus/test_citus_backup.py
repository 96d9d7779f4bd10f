"""Backups of a Citus coordinator restore with their distribution, or as plain tables with
--without-citus (issue 18, item 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_citus import CitusCluster
from tests.fix_pg import PgServer
from tests.helpers import invoke, write_config

SHOP_TABLES = 9


@pytest.fixture(scope="module")
def plain_db(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create_database()
    yield pg_server.conninfo(name)
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def config(citus_cluster: CitusCluster, citus_shop: str, plain_db: str,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Profiles: ``shop`` (the seeded cluster database), ``copy`` (a fresh database on the cluster:
    dbcli creates it on every node with the extension and the workers, as on a new cluster) and
    ``plain`` (plain PostgreSQL)."""
    directory = tmp_path_factory.mktemp("citus-backup")
    copy = f"shop_copy_{uuid.uuid4().hex[:6]}"
    return write_config(directory / "dbcli.yaml", {
        "default_profile": "shop",
        "profiles": {"shop": citus_cluster.profile(citus_shop), "copy": citus_cluster.profile(copy),
                     "plain": {"postgres": {"dsn": plain_db}}},
    })


@pytest.fixture(scope="module")
def backup_id(config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    where = str(tmp_path_factory.mktemp("citus-backups"))
    created = run(config, "backup", "create", "--dir", where)
    assert created["status"] == "ok"
    return created["id"], where


def run(config: Path, *args: str, code: int = 0) -> Any:
    result = invoke(["--config", str(config), *args, "-f", "json"])
    assert result.exit_code == code, result.stderr
    return result.json() if code == 0 else result


def distribution(config: Path, profile: str) -> list[dict[str, Any]]:
    return run(config, "--profile", profile, "sql",
               "SELECT table_name::text AS t, citus_table_type AS kind, distribution_column AS col, shard_count,"
               " (SELECT count(DISTINCT colocation_id) FROM citus_tables c2"
               "  WHERE c2.citus_table_type = c.citus_table_type) AS groups FROM citus_tables c ORDER BY 1")


def test_the_manifest_records_the_distribution(config: Path, backup_id: tuple[str, str]) -> None:
    from dbcli.backup.store import read_manifest

    manifest = read_manifest(Path(backup_id[1]) / backup_id[0])
    recorded = manifest["postgres"]["citus"]
    kinds = {t["table"]: (t["type"], t["column"]) for t in recorded["tables"]}
    assert kinds["order_items"] == ("distributed", "user_id")
    assert kinds["products"] == ("reference", None)
    assert recorded["settings"]["citus.enable_repartition_joins"] == "on"


def test_restore_into_a_citus_database_distributes_again(config: Path, backup_id: tuple[str, str]) -> None:
    ident, where = backup_id
    rows = run(config, "backup", "restore", ident, "--profile", "copy", "--dir", where)
    assert len(rows) >= SHOP_TABLES and all(r["ok"] for r in rows)
    assert distribution(config, "copy") == distribution(config, "shop")
    counts = "SELECT (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM order_items) AS i, " \
             "(SELECT count(*) FROM products) AS p"
    assert run(config, "--profile", "copy", "sql", counts) == run(config, "sql", counts)
    plan = run(config, "--profile", "copy", "report", "explain", "user-orders", "-P", "user_id=3")
    assert plan[0]["node"] == "Custom Scan (Citus Adaptive), 1 task(s)"
    same = ["report", "run", "user-orders", "-P", "user_id=3"]
    assert run(config, "--profile", "copy", *same) == run(config, *same)
    # the database settings came back too: the classic query needs repartition joins
    classic = ("SELECT o.order_id, oi.product_id FROM orders o JOIN order_items oi ON o.order_id = oi.order_id"
               " WHERE o.user_id = 3 ORDER BY 1, 2")
    assert run(config, "--profile", "copy", "sql", classic) == run(config, "sql", classic)

    # again over it with --drop: the target keeps its extension and nodes, the tables are distributed again
    rows = run(config, "backup", "restore", ident, "--profile", "copy", "--dir", where, "--drop")
    assert all(r["ok"] for r in rows)
    assert distribution(config, "copy") == distribution(config, "shop")
    assert run(config, "--profile", "copy", *same) == run(config, *same)


def test_restore_into_plain_postgres_needs_without_citus(config: Path, backup_id: tuple[str, str]) -> None:
    ident, where = backup_id
    refused = run(config, "backup", "restore", ident, "--profile", "plain", "--dir", where, code=3)
    assert "--without-citus" in refused.stderr
    rows = run(config, "backup", "restore", ident, "--profile", "plain", "--dir", where, "--without-citus")
    assert len(rows) >= SHOP_TABLES and all(r["ok"] for r in rows)
    found = run(config, "--profile", "plain", "sql",
                "SELECT count(*) AS n FROM pg_extension WHERE extname = 'citus'")
    assert found == [{"n": 0}]
