"""Report files: loading, the user directory, name clashes, parameters; read-only and timeouts."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import invoke, write_config


def user_report(directory: Path, name: str, **fields: Any) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": f"the {name} report", **fields}, sort_keys=False))
    return path


@pytest.fixture
def team_dir(tmp_path: Path, schema_config_file: Path) -> Path:
    """./dbcli.yaml (schema database) with reports.dir: ./reports, timeout 1 s."""
    import yaml as y

    data = y.safe_load(schema_config_file.read_text())
    data["reports"] = {"dir": str(tmp_path / "reports"), "timeout": 1}
    write_config(schema_config_file, data)
    (tmp_path / "reports").mkdir()
    return tmp_path / "reports"


# ---- loading -----------------------------------------------------------------------------------

def test_every_builtin_report_loads_and_declares_its_sources() -> None:
    from dbcli.config.load import load_config
    from dbcli.reports import registry

    found = registry.load_all(load_config())
    names = [r.name for r in found]
    assert {"user-orders", "customers-without-orders", "products-never-sold", "category-sales",
            "payment-reconciliation", "revenue-by-category", "lapsed-customers", "top-products-per-category",
            "daily-revenue", "top-customers", "best-sellers", "daily-active-users", "activity-by-type",
            "top-users", "funnel", "most-active-users"} <= set(names)
    assert all(r.builtin and r.sources and r.description for r in found)


def test_user_dir_report_is_listed_and_runs(team_dir: Path) -> None:
    user_report(team_dir, "big-spenders", target="postgres",
                params=[{"name": "min", "type": "decimal", "default": 100}],
                sources=["orders"], sql="SELECT %(min)s::numeric AS threshold, count(*) AS n FROM orders")
    listed = invoke(["report", "list", "-f", "json"])
    assert listed.exit_code == 0, listed.stderr
    mine = [r for r in listed.json() if r["name"] == "big-spenders"]
    assert mine == [{"name": "big-spenders", "target": "postgres", "params": "min:decimal=100",
                     "description": "the big-spenders report", "origin": str(team_dir / "big-spenders.yaml")}]
    result = invoke(["report", "run", "big-spenders", "-P", "min=12.50", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout, parse_float=Decimal) == [{"threshold": Decimal("12.50"), "n": 0}]


def test_name_clash_with_builtin_exits_3(team_dir: Path) -> None:
    user_report(team_dir, "user-orders", target="postgres", sources=["orders"], sql="SELECT 1 AS one")
    for args in (["report", "list"], ["report", "run", "best-sellers"]):
        result = invoke(args)
        assert result.exit_code == 3
        assert result.stderr == (f"Error: report 'user-orders' in {team_dir / 'user-orders.yaml'} clashes with "
                                 "the built-in report of that name (hint: rename the file and its name: key)\n")


def test_same_name_twice_in_user_dir_exits_3(team_dir: Path) -> None:
    user_report(team_dir, "dup", target="postgres", sources=["orders"], sql="SELECT 1 AS one")
    (team_dir / "dup.yml").write_text((team_dir / "dup.yaml").read_text())
    result = invoke(["report", "list"])
    assert result.exit_code == 3
    assert "report 'dup' is defined twice" in result.stderr


@pytest.mark.parametrize(("fields", "message"), [
    ({"target": "mysql", "sources": ["t"], "sql": "SELECT 1"}, "target must be postgres or mongo, got 'mysql'"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT %(x)s"},
     "sql: placeholder %(x)s is not a declared parameter"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 'a' LIKE 'a%'"},
     "sql: a literal % must be written %% (placeholders are %(name)s)"),
    ({"target": "postgres", "sql": "SELECT 1"}, "sources must list the tables or collections the report reads"),
    ({"target": "mongo", "sources": ["c"], "collection": "c", "pipeline": [{"$out": "x"}]},
     "stage $out writes: reports are read-only"),
    ({"target": "mongo", "sources": ["c"], "collection": "c", "pipeline": [{"$limit": {"$param": "n"}}]},
     "{$param: n} is not a declared parameter"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 1", "params": [{"name": "n", "type": "long"}]},
     "parameter 'n': type must be one of int, float, decimal, str, date, datetime, bool"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 1",
      "params": [{"name": "n", "type": "int", "default": "ten"}]},
     "parameter 'n': default must be an integer, got 'ten'"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 1",
      "params": [{"name": "n", "type": "int", "default": 0, "min": 1}]},
     "parameter 'n': default '0' is outside its min, max or choices"),
    ({"name": "other", "target": "postgres", "sources": ["t"], "sql": "SELECT 1"},
     "name 'other' must match the file name 'bad'"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 1",
      "params": [{"name": "a", "type": "date"}, {"name": "b", "type": "int", "not_before": "a"}]},
     "parameter 'b': not_before names 'a', which is not a parameter of type int"),
    ({"target": "postgres", "sources": ["t"], "sql": "SELECT 1",
      "params": [{"name": "b", "type": "date", "not_before": "b"}]},
     "parameter 'b': not_before must name another parameter"),
])
def test_malformed_user_report_exits_3(team_dir: Path, fields: dict[str, Any], message: str) -> None:
    path = team_dir / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "description": "x", **fields}))
    result = invoke(["report", "show", "bad"])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {path}: {message}\n"


def test_malformed_yaml_exits_3(team_dir: Path) -> None:
    (team_dir / "broken.yaml").write_text("name: broken\nsql: [unclosed\n")
    result = invoke(["report", "list"])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: {team_dir / 'broken.yaml'} line ")


def test_missing_reports_dir_exits_3(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"reports": {"dir": str(tmp_path / "nope")}})
    result = invoke(["report", "list"])
    assert result.exit_code == 3
    assert result.stderr == f"Error: reports.dir is not a directory: {tmp_path / 'nope'}\n"


def test_unknown_report_exits_6_with_suggestion() -> None:
    result = invoke(["report", "run", "user-order"])
    assert result.exit_code == 6
    assert result.stderr == "Error: unknown report 'user-order' (hint: did you mean 'user-orders'?)\n"


def test_show_prints_the_definition() -> None:
    result = invoke(["report", "show", "user-orders", "-f", "json"])
    assert result.exit_code == 0
    shown = result.json()
    assert shown["params"] == [{"name": "user_id", "type": "int", "required": True, "default": None, "min": "1",
                                "description": "the user whose orders to list"}]
    assert "WHERE ol.user_id = %(user_id)s" in shown["sql"]
    assert shown["sources"] == ["orders", "order_items", "products"]
    table = invoke(["report", "show", "funnel", "-f", "table"])
    assert table.exit_code == 0 and "$sort" in table.stdout


# ---- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "message"), [
    ([], 5, "report 'user-orders': parameter 'user_id' is required (hint: --param user_id=VALUE)"),
    (["-P", "user_id=abc"], 5, "report 'user-orders': parameter 'user_id' must be an integer, got 'abc'"),
    (["-P", "user_id=0"], 5, "report 'user-orders': parameter 'user_id' must be >= 1, got 0"),
    (["-P", "user_id=1", "-P", "userid=2"], 5,
     "report 'user-orders' has no parameter 'userid' (parameters: user_id) (hint: did you mean 'user_id'?)"),
    # a malformed --param is a usage error, like a malformed --where (issue 15)
    (["-P", "user_id"], 2, "--param 'user_id': expected KEY=VALUE"),
    (["-P", "user_id=1", "-P", "user_id=2"], 2, "--param 'user_id' is given twice"),
])
def test_bad_parameters_exit_5_naming_them(args: list[str], code: int, message: str) -> None:
    result = invoke(["report", "run", "user-orders", *args])
    assert result.exit_code == code
    assert result.stderr == f"Error: {message}\n"


@pytest.mark.parametrize("name", ["revenue-by-category", "daily-active-users", "payment-reconciliation"])
def test_a_reversed_date_range_exits_5(name: str) -> None:
    result = invoke(["report", "run", name, "-P", "from=2024-03-01", "-P", "to=2024-02-01"])
    assert (result.exit_code, result.stderr) == (5, f"Error: report {name!r}: parameter 'to' (2024-02-01) is "
                                                    "before 'from' (2024-03-01)\n")
    from dbcli.config.load import load_config
    from dbcli.reports import registry

    same_day = registry.get(load_config(), name).resolve({"from": "2024-03-01", "to": "2024-03-01"})
    assert same_day["from"] == same_day["to"]  # checked without running it (no server is started)


def test_bad_date_and_decimal_exit_5() -> None:
    result = invoke(["report", "run", "revenue-by-category", "-P", "from=2024-13-01"])
    assert (result.exit_code, result.stderr) == (5, "Error: report 'revenue-by-category': parameter 'from' must be "
                                                    "a date (YYYY-MM-DD, today, today-7d), got '2024-13-01'\n")
    result = invoke(["report", "explain", "revenue-by-category", "-P", "min_revenue=NaN"])
    assert (result.exit_code, result.stderr) == (5, "Error: report 'revenue-by-category': parameter 'min_revenue' "
                                                    "must be a decimal number, got 'NaN'\n")


def test_parameter_types_and_relative_dates() -> None:
    from dbcli.reports.params import Param

    today = dt.date(2024, 3, 10)
    assert Param("d", "date").convert("today-7d", "r", today) == dt.date(2024, 3, 3)
    assert Param("d", "date").convert("today", "r", today) == today
    assert Param("d", "date").convert(dt.date(2024, 1, 1), "r") == dt.date(2024, 1, 1)
    assert Param("t", "datetime").convert("2024-03-01T10:00Z", "r") == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    assert Param("t", "datetime").convert("2024-03-01 10:00", "r").tzinfo == dt.UTC
    assert Param("b", "bool").convert("yes", "r") is True
    assert Param("f", "float").convert("2.5", "r") == 2.5
    assert Param("m", "decimal").convert("0.10", "r") == Decimal("0.10")
    assert Param("s", "str", choices=("a", "b")).convert("a", "r") == "a"
    with pytest.raises(Exception, match="must be one of a, b, got 'c'"):
        Param("s", "str", choices=("a", "b")).convert("c", "r")
    with pytest.raises(Exception, match="must be <= 5, got 6"):
        Param("n", "int", max=5).convert("6", "r")


def test_mongo_parameters_are_substituted_as_values_never_text() -> None:
    from dbcli.config.load import load_config
    from dbcli.reports import mongo_runner, registry

    report = registry.get(load_config(), "funnel")
    evil = '"}, {"$where": "sleep(1000)"}'
    values = report.resolve({"first": evil, "then": "buy", "from": "2024-03-01", "to": "2024-03-02"})
    pipeline = mongo_runner.pipeline(report, values)
    assert pipeline[0] == {"$match": {"day": {"$gte": "2024-03-01", "$lte": "2024-03-02"},
                                      "type": {"$in": [evil, "buy"]}}}


# ---- read-only, timeout, atomic output -------------------------------------------------------------

def test_report_that_writes_is_refused_by_the_read_only_transaction(team_dir: Path, pg_server: Any,
                                                                     schema_db: str) -> None:
    import psycopg

    user_report(team_dir, "sneaky", target="postgres", sources=["categories"],
                sql="INSERT INTO categories (name) VALUES ('hacked') RETURNING category_id")
    result = invoke(["report", "run", "sneaky"])
    assert result.exit_code == 7
    assert result.stderr == "Error: report 'sneaky' tried to write: refused by the read-only transaction\n"
    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        assert conn.execute("SELECT count(*) FROM categories").fetchone() == (0,)
    # a CTE that writes is refused the same way, and so is EXPLAIN ANALYZE of it
    user_report(team_dir, "sneaky2", target="postgres", sources=["categories"],
                sql="WITH x AS (DELETE FROM categories RETURNING 1) SELECT count(*) AS n FROM x")
    assert invoke(["report", "run", "sneaky2"]).exit_code == 7
    assert invoke(["report", "explain", "sneaky2", "--analyze"]).exit_code == 7
    # COMMIT would end the read-only transaction: a second statement is never run, by run or explain
    user_report(team_dir, "sneaky3", target="postgres", sources=["categories"],
                sql="SELECT 1 AS one; COMMIT; INSERT INTO categories (name) VALUES ('hacked')")
    result = invoke(["report", "run", "sneaky3"])
    assert result.exit_code == 3
    assert result.stderr == ("Error: report 'sneaky3': the sql must be a single statement "
                             "(hint: remove the ';' between statements)\n")
    assert invoke(["report", "explain", "sneaky3"]).exit_code == 3
    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        assert conn.execute("SELECT count(*) FROM categories").fetchone() == (0,)


def test_overlong_report_exits_4_naming_it_and_leaves_no_file(team_dir: Path, tmp_path: Path) -> None:
    user_report(team_dir, "slow", target="postgres", sources=["orders"], sql="SELECT pg_sleep(5) AS slept")
    target = tmp_path / "out" / "slow.csv"
    target.parent.mkdir()
    target.write_text("previous good file\n")
    result = invoke(["report", "run", "slow", "-o", str(target)])
    assert result.exit_code == 4
    assert result.stderr == ("Error: report 'slow' timed out after 1s "
                             "(hint: raise reports.timeout, or narrow the parameters)\n")
    assert target.read_text() == "previous good file\n"  # untouched: cron never ships half a file
    assert sorted(p.name for p in target.parent.iterdir()) == ["slow.csv"]


def test_output_file_failure_while_writing_leaves_no_partial_file(team_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from dbcli import output

    user_report(team_dir, "many", target="postgres", sources=["orders"],
                sql="SELECT g AS n FROM generate_series(1, 1000) AS g")
    real = output.Output._jsonl

    def failing(self: Any, rows: Any, columns: Any, extended: bool) -> int:
        def boom() -> Any:
            for i, row in enumerate(rows):
                if i == 500:
                    raise OSError("disk full")
                yield row
        return real(self, boom(), columns, extended)

    monkeypatch.setattr(output.Output, "_jsonl", failing)
    target = tmp_path / "many.jsonl"
    result = invoke(["report", "run", "many", "-o", str(target)])
    assert result.exit_code == 1
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".many.jsonl")]
