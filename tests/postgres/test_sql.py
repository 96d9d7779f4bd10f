"""dbcli sql: ad-hoc statements, read-only unless --write, and every route around read-only refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dbcli.postgres.sql import split
from tests.fix_tables import Shop

USERS = "SELECT count(*) FROM users"


def _refused(cli: Any, *args: str, code: int = 7) -> str:
    result = cli("sql", *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == "" and result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    return str(result.stderr)


def test_select_as_json(shop: Shop, cli: Any) -> None:
    result = cli("sql", "select count(*) as n from users", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 2}]


def test_every_format_typed_as_in_reports(shop: Shop, cli: Any) -> None:
    query = "select product_id, price, sku from products order by product_id limit 2"
    assert json.loads(cli("sql", query, "-f", "json").stdout)[0] == {"product_id": 1, "price": 19.9, "sku": "LAMP-1"}
    assert cli("sql", query, "-f", "jsonl").stdout.splitlines()[1] == '{"product_id":2,"price":7.50,"sku":"MUG-1"}'
    assert cli("sql", query, "-f", "csv").stdout.splitlines() == ["product_id,price,sku", "1,19.90,LAMP-1",
                                                                  "2,7.50,MUG-1"]
    assert "LAMP-1" in cli("sql", query, "-f", "table").stdout


def test_params_are_bound_never_spliced(shop: Shop, cli: Any) -> None:
    result = cli("sql", "select name from users where email = %(e)s", "--param", "e=alice@example.com", "-f", "json")
    assert json.loads(result.stdout) == [{"name": "Alice"}]
    injection = cli("sql", "select name from users where email = %(e)s", "--param",
                    "e=x'; delete from users; --", "-f", "json")
    assert injection.exit_code == 0 and json.loads(injection.stdout) == []
    assert shop.scalar(USERS) == 2


def test_malformed_param_is_a_usage_error(shop: Shop, cli: Any) -> None:
    assert "expected name=value" in _refused(cli, "select 1", "--param", "oops", code=2)


def test_file_and_stdin(shop: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text("-- two statements; the last one printed\nselect 1 as a;\nselect 'x;y' as b;\n")
    assert json.loads(cli("sql", "--file", str(path), "-f", "json").stdout) == [{"b": "x;y"}]
    assert json.loads(cli("sql", "-", "-f", "json", input="select 2 as c").stdout) == [{"c": 2}]
    assert "one of them" in _refused(cli, code=2)


def test_user_errors_are_one_line_with_their_exit_code(shop: Shop, cli: Any, tmp_path: Path) -> None:
    assert "syntax error" in _refused(cli, "selec 1", code=5)
    assert "no_such_table" in _refused(cli, "select * from no_such_table", code=5)
    assert "not found" in _refused(cli, "--file", str(tmp_path / "missing.sql"), code=6)
    assert "no SQL statement" in _refused(cli, "/* only a comment */", code=5)
    assert "table import" in _refused(cli, "--write", "copy users from stdin", code=5)
    assert shop.scalar(USERS) == 2


def test_split_ignores_semicolons_in_literals_and_comments() -> None:
    text = "select ';' /* ; */; select $f$ a;b $f$ -- ;\n; select \"a;\" from t;;"
    assert split(text) == ["select ';' /* ; */", "select $f$ a;b $f$ -- ;", 'select "a;" from t']


def test_a_write_without_write_exits_7_and_deletes_nothing(shop: Shop, cli: Any) -> None:
    assert "use --write" in _refused(cli, "delete from users")
    assert shop.scalar(USERS) == 2


@pytest.mark.parametrize("text", [
    "with gone as (delete from users returning *) select count(*) from gone",
    "create table evil (x int)",
    "select nextval(pg_get_serial_sequence('users', 'user_id'))",  # refused by PostgreSQL itself
    "select lo_import('/etc/hostname')",
    "select lo_export(lo_create(0), '/tmp/dbcli-sql-evil')",
    "select * from \"lo_export\"(1, '/tmp/x')",
    "copy (select 1) to program 'touch /tmp/dbcli-sql-evil'",
    "copy users to '/tmp/dbcli-sql-evil'",
    "do $$ begin delete from users; end $$",
    "set role postgres; delete from users",
    "reset role; delete from users",
    "set session authorization default; delete from users",
    "set transaction read write; delete from users",
    "select set_config('transaction_read_only', 'off', true); delete from users",
    "commit; delete from users",
    "rollback; delete from users",
    "set session characteristics as transaction read write; commit; delete from users",
    "end; delete from users",
    "savepoint a; release a; delete from users",
])
def test_no_route_writes_without_write(shop: Shop, cli: Any, text: str) -> None:
    before = shop.query("SELECT last_value FROM users_user_id_seq")
    _refused(cli, text)
    assert shop.scalar(USERS) == 2
    assert shop.query("SELECT last_value FROM users_user_id_seq") == before
    assert shop.scalar("SELECT count(*) FROM pg_largeobject_metadata") == 0
    assert shop.scalar("SELECT to_regclass('evil')") is None
    assert not os.path.exists("/tmp/dbcli-sql-evil")


def test_write_commits_prints_the_count_and_refreshes_a_cached_report(shop: Shop, cli: Any) -> None:
    report = ["report", "run", "customers-without-orders", "-f", "json", "--cache"]
    before = cli(*report)
    assert len(json.loads(before.stdout)) == 2
    assert cli(*report).stderr.startswith("from the cache")
    result = cli("sql", "--write", "delete from users where user_id = 2", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "DELETE 1", "rows": 1}
    assert shop.scalar(USERS) == 1
    after = cli(*report)
    assert after.stderr == "" and len(json.loads(after.stdout)) == 1


def test_write_several_statements_in_one_transaction(shop: Shop, cli: Any) -> None:
    text = "update products set stock = 0 where product_id = 1; update products set stock = -1 where product_id = 2"
    result = cli("sql", "--write", text)
    assert result.exit_code == 7 and result.stderr.count("\n") == 1  # a check constraint: all rolled back
    assert shop.query("SELECT stock FROM products ORDER BY product_id") == [(5,), (100,), (2,)]


def test_transaction_control_is_refused_before_anything_runs_even_with_write(shop: Shop, cli: Any) -> None:
    for text in ("delete from users where user_id = 2; commit; select 1/0", "begin; delete from users",
                 "delete from users where user_id = 2; prepare transaction 'x'"):
        assert "transaction control" in _refused(cli, "--write", text)
    assert shop.scalar(USERS) == 2
    savepoint = "savepoint a; delete from users where user_id = 2; rollback to a; select count(*) as n from users"
    assert json.loads(cli("sql", "--write", savepoint, "-f", "json").stdout) == [{"n": 2}]


def test_timeout_exits_4(shop: Shop, cli: Any) -> None:
    assert "statement timed out" in _refused(cli, "select pg_sleep(5)", "--timeout", "0.2", code=4)


def test_a_query_of_a_killed_dbcli_ends_on_the_server(shop: Shop) -> None:
    env = {**os.environ, "DBCLI_CONFIG": str(shop.config)}
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "sql", "select pg_sleep(60), 'dbcli-sql-killed'"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    probe = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60), ''dbcli-sql-killed%' "
             "AND state = 'active' AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + 30
    while shop.scalar(probe) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shop.scalar(probe) == 1
    proc.kill()  # no cancel request: only the server's check of its client ends the query
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while shop.scalar(probe) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shop.scalar(probe) == 0


def test_ctrl_c_cancels_the_query_on_the_server(shop: Shop) -> None:
    env = {**os.environ, "DBCLI_CONFIG": str(shop.config)}
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "sql", "select pg_sleep(60), 'dbcli-sql-sleeper'"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probe = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%dbcli-sql-sleeper%' AND pid <> pg_backend_pid()"
    deadline = time.monotonic() + 30
    while shop.scalar(probe) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in err
    deadline = time.monotonic() + 10
    while shop.scalar(probe) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shop.scalar(probe) == 0
