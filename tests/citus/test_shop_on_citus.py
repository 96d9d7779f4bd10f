"""The shop on a Citus cluster: distribution, reports equal to a single node, writes, backups (issue 18)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_citus import SEED, CitusCluster
from tests.fix_pg import PgServer
from tests.helpers import invoke, write_config

# the classic query of the issue, unchanged
USER_ORDERS = ("SELECT o.order_id, o.order_date, p.product_name, oi.quantity FROM orders o JOIN order_items oi "
               "ON o.order_id = oi.order_id JOIN products p ON oi.product_id = p.product_id WHERE o.user_id = 3 "
               "ORDER BY 1, 3")
DAY = {"from": "2024-06-01", "to": "2024-12-31"}
PARAMS = {"user-orders": {"user_id": "3"}, "product-buyers": {"product_id": "5"}, "category-sales": DAY,
          "revenue-by-category": DAY, "top-products-per-category": DAY, "daily-revenue": DAY,
          "payment-reconciliation": DAY, "large-orders": {**DAY, "min_total": "0"}}


@pytest.fixture(scope="module")
def single_node(pg_server: PgServer, schema_template: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Path]:
    """A config file for a single-node database seeded exactly like the cluster's ``shop``."""
    from dbcli.config.load import load_config
    from dbcli.shop.seed.load import seed

    name = pg_server.create_database(template=schema_template)
    path = write_config(tmp_path_factory.mktemp("single") / "dbcli.yaml",
                        {"postgres": {"dsn": pg_server.conninfo(name)}})
    seed(load_config(str(path)), events=0, **SEED)
    yield path
    pg_server.drop_database(name)


@pytest.fixture
def on_shop(citus_cluster: CitusCluster, citus_shop: str, tmp_path: Path) -> Path:
    return citus_cluster.config_file(tmp_path, citus_shop)


def run(config: Path, *args: str) -> Any:
    result = invoke(["--config", str(config), *args, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_schema_distributes_the_shop_by_user_id(on_shop: Path) -> None:
    rows = run(on_shop, "sql", "SELECT table_name::text AS t, citus_table_type AS kind, distribution_column AS col,"
                               " colocation_id FROM citus_tables ORDER BY 1")
    assert len(rows) >= 9
    kinds = {r["t"]: (r["kind"], r["col"]) for r in rows}
    for table in ("users", "user_profiles", "addresses", "orders", "order_items", "payments"):
        assert kinds[table] == ("distributed", "user_id")
    for table in ("categories", "products", "product_categories"):
        assert kinds[table][0] == "reference"
    assert len({r["colocation_id"] for r in rows if r["kind"] == "distributed"}) == 1
    status = run(on_shop, "schema", "status")
    assert {r["state"] for r in status} == {"applied"}


def test_every_builtin_report_returns_the_single_node_rows(on_shop: Path, single_node: Path) -> None:
    names = [r["name"] for r in run(single_node, "report", "list") if r["target"] == "postgres"]
    assert "user-orders" in names
    for name in names:
        args = [arg for key, value in PARAMS.get(name, {}).items() for arg in ("-P", f"{key}={value}")]
        single = run(single_node, "report", "run", name, *args)
        cluster = run(on_shop, "report", "run", name, *args)
        # the same rows; ties in ORDER BY may come back in another order from several shards
        assert sorted(map(json.dumps, cluster)) == sorted(map(json.dumps, single)), name
    assert run(on_shop, "sql", USER_ORDERS) == run(single_node, "sql", USER_ORDERS)


def test_user_orders_runs_in_one_shard_group(on_shop: Path) -> None:
    plan = run(on_shop, "report", "explain", "user-orders", "-P", "user_id=3")
    assert plan[0]["node"] == "Custom Scan (Citus Adaptive), 1 task(s)"
    assert plan[1]["node"].strip().startswith("-> Task on 127.0.0.1:")
    scanned = {r["relation"].rsplit("_", 1)[0] for r in plan if r["relation"]}
    assert {"orders", "order_items", "products"} <= scanned


def test_backup_then_restore_test(on_shop: Path) -> None:
    created = run(on_shop, "backup", "create")
    assert created["status"] == "ok"
    checks = run(on_shop, "backup", "verify", created["id"], "--restore-test")
    assert all(c["ok"] for c in checks)
    counts = {c["subject"] for c in checks if c["check"] == "restore-test"}
    assert "postgres public.order_items" in counts
