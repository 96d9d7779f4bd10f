"""Built-in PostgreSQL reports: exact results on a small known data set, and independent SQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import KNOWN_SQL, invoke

UTC = dt.UTC


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# The known data set (KNOWN_SQL). Users 3 and 4 never ordered; products 4 and 6 were never sold; category 4
# (Toys) has no sales; product 1 sits in two categories; order 2 is cancelled; order 3 was
# underpaid; order 4 has only a failed payment; order 2 (cancelled) has a completed payment.
MARCH = {"from": "2024-03-01", "to": "2024-03-31"}


@pytest.fixture
def known(schema_config_file: Path, pg_server: Any, schema_db: str, load_cfg: Callable[..., Any]) -> Any:
    """The library Config for a database holding the known data set."""
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        conn.execute(KNOWN_SQL)
    return load_cfg()


def rows(cfg: Any, name: str, **given: str) -> list[dict[str, Any]]:
    from dbcli.reports import pg_runner, registry

    report = registry.get(cfg, name)
    return pg_runner.run(cfg, report, report.resolve(given)).rows


def tuples(result: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in columns) for r in result]


def D(text: str) -> Decimal:  # reads like a literal
    return Decimal(text)


# ---- exact results, one test per built-in report ----------------------------------------------

def test_user_orders(known: Any) -> None:
    got = rows(known, "user-orders", user_id="1")
    assert list(got[0]) == ["order_id", "order_date", "status", "product_name", "quantity", "unit_price",
                            "line_total"]
    assert tuples(got, "order_id", "order_date", "status", "product_name", "quantity", "unit_price",
                  "line_total") == [
        (5, ts("2024-01-15 08:00"), "delivered", "Cookbook", 3, D("15.00"), D("45.00")),
        (1, ts("2024-03-01 10:00"), "delivered", "Laptop", 1, D("900.00"), D("900.00")),
        (1, ts("2024-03-01 10:00"), "delivered", "Novel", 2, D("10.00"), D("20.00")),
        (2, ts("2024-03-05 12:00"), "cancelled", "Phone", 1, D("500.00"), D("500.00")),
    ]
    assert rows(known, "user-orders", user_id="3") == []


def test_customers_without_orders(known: Any) -> None:
    assert tuples(rows(known, "customers-without-orders"), "user_id", "email", "tier") == [
        (3, "cid@example.com", "standard"), (4, "dee@example.com", "standard")]
    assert tuples(rows(known, "customers-without-orders", signed_up_before="2024-05-01"), "user_id") == [(3,)]


def test_products_never_sold(known: Any) -> None:
    assert tuples(rows(known, "products-never-sold"), "product_id", "sku", "active") == [
        (4, "TY-1", True), (6, "EL-3", False)]
    assert tuples(rows(known, "products-never-sold", active_only="true"), "product_id") == [(4,)]


def test_category_sales_keeps_empty_categories(known: Any) -> None:
    assert tuples(rows(known, "category-sales", **MARCH), "category_id", "category", "orders", "units",
                  "revenue") == [
        (3, "Electronics", 2, 3, D("1800.00")),
        (1, "Books", 3, 4, D("47.00")),
        (2, "Books / Fiction", 2, 3, D("32.00")),
        (4, "Toys", 0, 0, D("0.00")),
    ]


def test_revenue_by_category_having(known: Any) -> None:
    assert tuples(rows(known, "revenue-by-category", **MARCH, min_revenue="40"), "category", "orders", "units",
                  "revenue") == [("Electronics", 2, 3, D("1800.00")), ("Books", 3, 4, D("47.00"))]
    assert [r["category"] for r in rows(known, "revenue-by-category", **MARCH)] == [
        "Electronics", "Books", "Books / Fiction"]
    # January: only order 5 (3 cookbooks)
    assert tuples(rows(known, "revenue-by-category", **{"from": "2024-01-01", "to": "2024-01-31"}),
                  "category", "revenue") == [("Books", D("45.00"))]


def test_payment_reconciliation_full_outer_join(known: Any) -> None:
    assert tuples(rows(known, "payment-reconciliation", **MARCH), "order_id", "order_status", "order_total",
                  "amount_paid", "payments", "issue") == [
        (2, None, None, D("500.00"), 1, "payment without a due order"),
        (3, "paid", D("915.00"), D("900.00"), 1, "amount mismatch"),
        (4, "shipped", D("12.00"), None, 0, "no payment"),
    ]


def test_lapsed_customers_exists_not_exists(known: Any) -> None:
    assert tuples(rows(known, "lapsed-customers", since="2024-03-06"), "user_id", "last_order_date", "orders",
                  "lifetime_value") == [(1, ts("2024-03-05 12:00"), 3, D("965.00"))]
    assert rows(known, "lapsed-customers", since="2024-03-03") == []


def test_product_buyers(known: Any) -> None:
    assert tuples(rows(known, "product-buyers", product_id="1"), "user_id", "units_bought") == [(1, 2), (2, 1)]
    assert tuples(rows(known, "product-buyers", product_id="3"), "user_id", "units_bought") == [(2, 2), (1, 1)]
    assert rows(known, "product-buyers", product_id="4") == []


def test_top_products_per_category_window(known: Any) -> None:
    assert tuples(rows(known, "top-products-per-category", **MARCH, top="1"), "category", "rank", "product_name",
                  "units", "revenue") == [
        ("Books", 1, "Novel", 3, D("32.00")),
        ("Books / Fiction", 1, "Novel", 3, D("32.00")),
        ("Electronics", 1, "Laptop", 1, D("900.00")),  # a tie: both rank 1
        ("Electronics", 1, "Phone", 2, D("900.00")),
    ]
    assert [r["product_name"] for r in rows(known, "top-products-per-category", **MARCH)
            if r["category"] == "Books"] == ["Novel", "Cookbook"]


def test_daily_revenue_running_total(known: Any) -> None:
    assert tuples(rows(known, "daily-revenue", **{"from": "2024-03-04", "to": "2024-03-06"}), "day", "orders",
                  "revenue", "running_revenue") == [
        (dt.date(2024, 3, 4), 0, D("0.00"), D("0.00")),
        (dt.date(2024, 3, 5), 1, D("915.00"), D("915.00")),  # 23:30 UTC is still the 5th
        (dt.date(2024, 3, 6), 0, D("0.00"), D("915.00")),
    ]


def test_daily_revenue_days_are_utc_whatever_the_session_zone(known: Any, pg_server: Any, schema_db: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_server.conninfo(schema_db), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Asia/Tokyo'").format(sql.Identifier(schema_db)))
    got = rows(known, "daily-revenue", **{"from": "2024-03-05", "to": "2024-03-05"})
    assert tuples(got, "day", "revenue") == [(dt.date(2024, 3, 5), D("915.00"))]


def test_top_customers_from_view(known: Any) -> None:
    assert tuples(rows(known, "top-customers"), "user_id", "order_count", "total_spent") == [
        (1, 3, D("965.00")), (2, 2, D("927.00"))]
    assert tuples(rows(known, "top-customers", min_orders="0", limit="3"), "user_id") == [(1,), (2,), (3,)]


def test_best_sellers_from_view(known: Any) -> None:
    assert tuples(rows(known, "best-sellers"), "product_id", "units_sold", "revenue") == [
        (2, 1, D("900.00")), (3, 2, D("900.00")), (5, 4, D("60.00")), (1, 3, D("32.00")),
        (4, 0, D("0.00")), (6, 0, D("0.00"))]
    assert len(rows(known, "best-sellers", limit="2")) == 2


def test_large_orders_from_view(known: Any) -> None:
    assert tuples(rows(known, "large-orders", **MARCH, min_total="100"), "order_id", "status", "item_count",
                  "unit_count", "total") == [
        (1, "delivered", 2, 3, D("920.00")), (3, "paid", 2, 3, D("915.00")), (2, "cancelled", 1, 1, D("500.00"))]


# ---- the same questions in SQL written independently ---------------------------------------------

INDEPENDENT = {
    "revenue-by-category": (
        {"from": "2024-03-01", "to": "2024-03-31", "min_revenue": "0"}, ["category_id", "revenue"],
        """SELECT pc.category_id, sum(oi.quantity * oi.unit_price)
           FROM order_items oi, orders o, product_categories pc
           WHERE o.order_id = oi.order_id AND pc.product_id = oi.product_id
             AND o.status <> ALL (ARRAY['cancelled', 'refunded'])
             AND o.order_date BETWEEN '2024-03-01 00:00+00' AND '2024-03-31 23:59:59.999999+00'
           GROUP BY pc.category_id"""),
    "customers-without-orders": (
        {}, ["user_id"],
        "SELECT user_id FROM users EXCEPT SELECT user_id FROM orders"),
    "products-never-sold": (
        {}, ["product_id"],
        "SELECT product_id FROM products WHERE product_id NOT IN (SELECT product_id FROM order_items)"),
    "best-sellers": (
        {"limit": "1000"}, ["product_id", "revenue"],
        """SELECT p.product_id, coalesce((SELECT sum(oi.quantity * oi.unit_price) FROM order_items oi
                                           JOIN orders o USING (order_id)
                                           WHERE oi.product_id = p.product_id
                                             AND o.status NOT IN ('cancelled', 'refunded')), 0)
           FROM products p"""),
    "lapsed-customers": (
        {"since": "2024-03-06"}, ["user_id"],
        """SELECT user_id FROM orders GROUP BY user_id
           HAVING max(order_date) < '2024-03-06 00:00+00'"""),
}


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_matches_independent_sql(known: Any, pg_server: Any, schema_db: str, name: str) -> None:
    import psycopg

    given, columns, query = INDEPENDENT[name]
    got = sorted(tuples(rows(known, name, **given), *columns))
    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        expected = sorted(tuple(r) for r in conn.execute(query).fetchall())
    assert got == expected and got


def test_daily_revenue_matches_python(known: Any, pg_server: Any, schema_db: str) -> None:
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        lines = conn.execute("SELECT o.order_date, o.status, oi.quantity * oi.unit_price FROM orders o"
                             " JOIN order_items oi USING (order_id)").fetchall()
    per_day: dict[dt.date, Decimal] = {}
    for when, status, amount in lines:
        if status not in ("cancelled", "refunded"):
            day = when.astimezone(UTC).date()
            per_day[day] = per_day.get(day, Decimal(0)) + amount
    got = rows(known, "daily-revenue", **{"from": "2024-01-01", "to": "2024-03-31"})
    assert len(got) == 91
    running = Decimal(0)
    for r in got:
        running += per_day.get(r["day"], Decimal(0))
        assert (r["revenue"], r["running_revenue"]) == (per_day.get(r["day"], Decimal("0.00")), running)


# ---- through the command line ------------------------------------------------------------------------

def test_cli_run_json_keeps_exact_numbers(known: Any) -> None:
    result = invoke(["report", "run", "user-orders", "--param", "user_id=2", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout, parse_float=Decimal)
    assert [(r["order_id"], r["product_name"], r["line_total"]) for r in got] == [
        (3, "Cookbook", D("15.00")), (3, "Phone", D("900.00")), (4, "Novel", D("12.00"))]
    assert result.stderr == ""


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_cli_run_formats(known: Any, fmt: str) -> None:
    result = invoke(["report", "run", "revenue-by-category", "-P", "from=2024-03-01", "-P", "to=2024-03-31",
                     "-f", fmt])
    assert result.exit_code == 0, result.stderr
    if fmt == "csv":
        assert result.stdout.splitlines() == ["category_id,category,orders,units,revenue",
                                              "3,Electronics,2,3,1800.00", "1,Books,3,4,47.00",
                                              "2,Books / Fiction,2,3,32.00"]
    elif fmt == "jsonl":
        assert [json.loads(line)["category"] for line in result.stdout.splitlines()] == [
            "Electronics", "Books", "Books / Fiction"]
    elif fmt == "json":
        assert len(result.json()) == 3
    else:
        assert "Books / Fiction" in result.stdout and "1800.00" in result.stdout


def test_cli_quiet_prints_nothing(known: Any) -> None:
    result = invoke(["report", "run", "user-orders", "-P", "user_id=1", "--quiet"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_cli_output_file(known: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "orders.csv"
    target.parent.mkdir()
    result = invoke(["report", "run", "user-orders", "-P", "user_id=2", "-o", str(target)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"wrote 3 rows to {target}\n"
    header = target.read_text().splitlines()[0]
    assert header == "order_id,order_date,status,product_name,quantity,unit_price,line_total"
    target_json = tmp_path / "orders.data"
    assert invoke(["report", "run", "user-orders", "-P", "user_id=2", "-o", str(target_json), "-q"]).exit_code == 0
    assert len(json.loads(target_json.read_text())) == 3


def test_cli_chart_on_stdout_with_table(known: Any) -> None:
    result = invoke(["report", "run", "revenue-by-category", "-P", "from=2024-03-01", "-P", "to=2024-03-31",
                     "-f", "table", "--chart", "revenue"])
    assert result.exit_code == 0, result.stderr
    chart = [line for line in result.stdout.splitlines() if "█" in line]
    assert chart[0].startswith("Electronics      1800.00  ████")
    assert [line.split()[0] for line in chart] == ["Electronics", "Books", "Books"]
    assert "\x1b[" not in result.stdout


def test_cli_chart_goes_to_stderr_with_json(known: Any) -> None:
    result = invoke(["report", "run", "revenue-by-category", "-P", "from=2024-03-01", "-P", "to=2024-03-31",
                     "-f", "json", "--chart", "orders", "--chart-label", "category_id"])
    assert result.exit_code == 0, result.stderr
    assert len(result.json()) == 3
    assert result.stderr.splitlines()[0].startswith("3  2  ")


def test_cli_chart_of_a_text_column_exits_5_and_writes_nothing(known: Any, tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    result = invoke(["report", "run", "revenue-by-category", "-P", "from=2024-03-01", "-P", "to=2024-03-31",
                     "--chart", "category", "-o", str(target)])
    assert result.exit_code == 5
    assert result.stderr == "Error: --chart column 'category' is not numeric (it holds str values)\n"
    assert not target.exists()
    result = invoke(["report", "run", "revenue-by-category", "--chart", "nope"])
    assert result.exit_code == 5
    assert result.stderr == ("Error: --chart: no column 'nope' (columns: category_id, category, orders, units, "
                             "revenue)\n")


def test_demo_step_runs_three_reports_one_charted(known: Any) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo import reports

    out = Output(fmt="table", stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)
    reports.step(known, out)
    said = out.stderr.getvalue()
    assert said.count("$ dbcli report run ") == 3
    assert "--chart revenue" in said
    shown = out.stdout.getvalue()
    assert "Electronics" in shown and "Laptop" in shown and "█" in shown
