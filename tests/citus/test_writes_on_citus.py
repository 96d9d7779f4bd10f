"""Every writing command on the Citus cluster: table CRUD, order place, import/export, seed, sql, cache,
encryption (issue 18). One database of their own, so the read-only comparisons elsewhere stay exact."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fix_citus import SEED, CitusCluster
from tests.helpers import invoke, write_config

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(scope="module")
def writes_db(citus_cluster: CitusCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with the schema applied and a small seed, encrypted phone numbers included."""
    directory = tmp_path_factory.mktemp("citus-writes")
    write_config(directory / "dbcli.yaml", profile(citus_cluster, "writes"))
    result = invoke(["--config", str(directory / "dbcli.yaml"), "schema", "apply", "-q"])
    assert result.exit_code == 0, result.stderr
    return "writes"


def profile(cluster: CitusCluster, dbname: str) -> dict[str, Any]:
    return {**cluster.profile(dbname), "encryption": {"key": KEY, "columns": {"user_profiles": ["phone"]}}}


@pytest.fixture
def on_writes(citus_cluster: CitusCluster, writes_db: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "dbcli.yaml", profile(citus_cluster, writes_db))


def ok(*args: str, input: str | None = None) -> Any:
    result = invoke([*args, "-f", "json"], input=input)
    assert result.exit_code == 0, result.stderr
    return result.json() if result.stdout.strip() else None


def test_seed_and_seed_reset(on_writes: Path) -> None:
    small = ["--users", "30", "--products", "10", "--orders", "80", "--events", "0", "--seed", str(SEED["seed"])]
    counts = {r["name"]: r["rows"] for r in ok("seed", *small)}
    assert counts["orders"] == 80
    again = invoke(["seed", *small])
    assert again.exit_code == 7  # refuses a schema that holds rows, as on one server
    counts = {r["name"]: r["rows"] for r in ok("seed", "--reset", "--yes", *small)}
    assert ok("sql", "SELECT count(*) AS n FROM order_items")[0]["n"] == counts["order_items"]
    # the lines carry their order's user, so each order and its lines share a shard group
    assert ok("sql", "SELECT count(*) AS n FROM order_items oi JOIN orders o"
                     " ON o.order_id = oi.order_id AND o.user_id = oi.user_id")[0]["n"] == counts["order_items"]
    # the phone numbers went in encrypted and come back decrypted
    stored = ok("sql", "SELECT phone FROM user_profiles WHERE phone IS NOT NULL LIMIT 1")[0]["phone"]
    assert stored.startswith("enc:v1:")


def test_table_crud(on_writes: Path) -> None:
    user = ok("table", "insert", "users", "--data", json.dumps({"email": "citus@example.com", "name": "Cit"}))
    uid = user["user_id"] if isinstance(user, dict) else user[0]["user_id"]
    got = ok("table", "get", "users", str(uid))
    assert got["email"] == "citus@example.com"
    ok("table", "update", "users", "--set", "tier=gold", "--where", f"user_id={uid}")
    assert ok("table", "get", "users", str(uid))["tier"] == "gold"
    ok("table", "delete", "users", "--where", f"user_id={uid}")
    assert invoke(["table", "get", "users", str(uid)]).exit_code == 6


def test_order_place_then_read_it_back(on_writes: Path) -> None:
    ok("seed", "--reset", "--yes", "--users", "20", "--products", "10", "--orders", "30", "--events", "0")
    stock = ok("sql", "SELECT stock FROM products WHERE product_id = 2")[0]["stock"]
    placed = ok("order", "place", "--user", "4", "--item", "2:1", "--item", "3:2")
    assert placed["user_id"] == 4 and placed["items"] and placed["payment_id"]
    assert ok("sql", "SELECT stock FROM products WHERE product_id = 2")[0]["stock"] == stock - 1
    shown = ok("order", "show", str(placed["order_id"]))
    assert [i["product_id"] for i in shown["items"]] == [2, 3]
    lines = ok("report", "run", "user-orders", "-P", "user_id=4")
    assert {r["order_id"] for r in lines} >= {placed["order_id"]}
    too_many = invoke(["order", "place", "--user", "4", "--item", f"2:{stock + 10}"])
    assert too_many.exit_code == 7  # the whole transaction rolled back, as on one server


def test_import_export_and_sql(on_writes: Path, tmp_path: Path) -> None:
    rows = [{"email": f"imp{i}@example.com", "name": f"Imp {i}"} for i in range(50)]
    source = tmp_path / "users.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = ok("table", "import", "users", str(source))
    assert done["rows"] == 50
    target = tmp_path / "out.csv"
    result = invoke(["table", "export", "users", "-o", str(target), "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert sum("@example.com" in line for line in target.read_text().splitlines()) >= 50
    changed = ok("sql", "--write", "UPDATE users SET tier = 'silver' WHERE email LIKE 'imp%'")
    assert changed == {"status": "UPDATE 50", "rows": 50}


def test_report_cache_hits_on_the_second_run(on_writes: Path) -> None:
    first = invoke(["report", "run", "best-sellers", "--cache", "-f", "json"])
    second = invoke(["report", "run", "best-sellers", "--cache", "-f", "json"])
    assert first.exit_code == second.exit_code == 0, first.stderr
    assert first.json() == second.json()
    assert "from the cache" in second.stderr
