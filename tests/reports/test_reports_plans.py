"""Plans on seeded data: parameterised reports use indexes, declared sources cover what they read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import invoke, write_config

# Selective parameters, as an analyst would pass them: one user, one product, one day.
DAY = {"from": "2024-11-20", "to": "2024-11-20"}
PARAMETERISED = {
    "user-orders": {"user_id": "7"},
    "product-buyers": {"product_id": "150"},
    "category-sales": DAY,
    "revenue-by-category": DAY,
    "top-products-per-category": DAY,
    "daily-revenue": DAY,
    "payment-reconciliation": DAY,
    "large-orders": {**DAY, "min_total": "0"},
}
# Whole-population questions (every customer, every product): a sequential scan is the right plan.
NOT_SELECTIVE = {"customers-without-orders", "products-never-sold", "lapsed-customers", "top-customers",
                 "best-sellers"}


@pytest.fixture(scope="module")
def seeded(pg_server: Any, schema_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config file for a database seeded by dbcli.shop.seed (6000 orders, ~14k lines), analysed."""
    import psycopg

    from dbcli.config.load import load_config
    from dbcli.shop.seed import load as seed

    name = pg_server.create_database(template=schema_template)
    path = write_config(tmp_path_factory.mktemp("seeded") / "dbcli.yaml",
                        {"postgres": {"dsn": pg_server.conninfo(name)}})
    seed.seed(load_config(str(path)), users=400, products=200, orders=6000, events=0, seed=1)
    with psycopg.connect(pg_server.conninfo(name), autocommit=True) as conn:
        conn.execute("ANALYZE")
    yield path
    pg_server.drop_database(name)


def test_every_builtin_postgres_report_is_classified() -> None:
    from dbcli.config.load import load_config
    from dbcli.reports import registry

    names = {r.name for r in registry.load_all(load_config()) if r.target == "postgres"}
    assert names == set(PARAMETERISED) | NOT_SELECTIVE


@pytest.mark.parametrize("name", sorted(PARAMETERISED))
def test_parameterised_reports_use_indexes(seeded: Path, name: str) -> None:
    from dbcli.config.load import load_config
    from dbcli.reports import explain_pg, registry

    cfg = load_config(str(seeded))
    report = registry.get(cfg, name)
    plan = explain_pg.explain(cfg, report, report.resolve(PARAMETERISED[name]))
    scans = [(row["node"].strip(" ->"), row["relation"]) for row in plan.rows if row["relation"]]
    assert not [s for s in scans if "Seq Scan" in s[0] and s[1] in ("orders", "order_items")], scans
    assert any("Index" in node for node, _ in scans)
    assert plan.warnings == []


@pytest.mark.parametrize("name", sorted(PARAMETERISED) + sorted(NOT_SELECTIVE))
def test_declared_sources_cover_every_table_in_the_plan(seeded: Path, name: str) -> None:
    """Cache invalidation relies on ``sources``: views are expanded by the planner, so this checks them."""
    from dbcli.config.load import load_config
    from dbcli.reports import explain_pg, registry

    cfg = load_config(str(seeded))
    report = registry.get(cfg, name)
    plan = explain_pg.explain(cfg, report, report.resolve(PARAMETERISED.get(name, {})))
    read = {row["relation"] for row in plan.rows if row["relation"]}  # bitmap index scans: see their heap scan
    tables = {"users", "orders", "order_items", "products", "product_categories", "categories", "payments"}
    assert (read & tables) <= set(report.sources), (read, report.sources)


def test_explain_cli_flags_seq_scan_on_large_table(seeded: Path, tmp_path: Path) -> None:
    reports_dir = tmp_path / "team"
    reports_dir.mkdir()
    (reports_dir / "all-lines.yaml").write_text(
        "target: postgres\nsources: [order_items]\nsql: SELECT sum(quantity) AS units FROM order_items\n")
    data = {"postgres": {"dsn": yaml.safe_load(seeded.read_text())["postgres"]["dsn"]},
            "reports": {"dir": str(reports_dir)}}
    write_config(tmp_path / "dbcli.yaml", data)
    result = invoke(["report", "explain", "all-lines", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    scan = [r for r in result.json() if r["relation"] == "order_items"]
    assert scan and scan[0]["node"].endswith("Seq Scan")
    assert scan[0]["warning"].startswith("seq scan on a large table (~1")
    assert result.stderr.startswith("Warning: sequential scan on order_items (~1")

    analyzed = invoke(["report", "explain", "user-orders", "-P", "user_id=7", "--analyze", "-f", "json"])
    assert analyzed.exit_code == 0, analyzed.stderr
    top = analyzed.json()[0]
    assert top["node"] == "Sort" and top["actual_rows"] is not None and top["loops"] == 1
    assert analyzed.stderr == ""

    raw = invoke(["report", "explain", "user-orders", "-P", "user_id=7", "--raw", "-f", "json"])
    assert raw.exit_code == 0
    assert raw.json()["plan"][0]["Plan"]["Node Type"] == "Sort"


def test_explain_bad_parameter_exits_5(seeded: Path, tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", yaml.safe_load(seeded.read_text()))
    result = invoke(["report", "explain", "user-orders"])
    assert result.exit_code == 5
    assert result.stderr == ("Error: report 'user-orders': parameter 'user_id' is required "
                             "(hint: --param user_id=VALUE)\n")


def test_seeded_results_match_independent_sql(seeded: Path, pg_server: Any) -> None:
    import psycopg

    from dbcli.config.load import load_config
    from dbcli.reports import pg_runner, registry

    cfg = load_config(str(seeded))
    dsn = yaml.safe_load(seeded.read_text())["postgres"]["dsn"]
    report = registry.get(cfg, "revenue-by-category")
    got = pg_runner.run(cfg, report, report.resolve({"from": "2024-01-01", "to": "2024-12-31"})).rows
    with psycopg.connect(dsn) as conn:
        expected = dict(conn.execute(
            "SELECT pc.category_id, sum(oi.quantity * oi.unit_price) FROM order_items oi"
            " JOIN orders o ON o.order_id = oi.order_id JOIN product_categories pc USING (product_id)"
            " WHERE o.status NOT IN ('cancelled', 'refunded')"
            "   AND o.order_date >= '2024-01-01 00:00+00' AND o.order_date < '2025-01-01 00:00+00'"
            " GROUP BY 1").fetchall())
        user = conn.execute("SELECT user_id FROM orders GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
        lines = conn.execute("SELECT count(*) FROM order_items JOIN orders USING (order_id) WHERE user_id = %s",
                             (user,)).fetchone()[0]
    assert {r["category_id"]: r["revenue"] for r in got} == expected
    report = registry.get(cfg, "user-orders")
    assert len(pg_runner.run(cfg, report, report.resolve({"user_id": str(user)})).rows) == lines
