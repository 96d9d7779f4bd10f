"""dbcli sql -f csv|jsonl|json streamed by the server through COPY: PostgreSQL's forms, the same
bytes as table export, nothing printed on an early error, and no statement smuggled past the
read-only checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fix_tables import Shop
from tests.postgres.test_export_copy import ok, sink  # noqa: F401  (sink: a fixture used by name)


@pytest.mark.usefixtures("sink")
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_sql_prints_what_table_export_writes(cli: Any, fmt: str) -> None:
    """Every type of the kitchen sink (text with tabs, quotes and line breaks, '' and NULL,
    numeric, NaN, arrays, jsonb, bytea, infinity, time zones, UUIDs, Unicode): the same bytes."""
    exported = ok(cli("table", "export", "sink", "--order-by", "id", "--format", fmt))
    assert ok(cli("sql", "select * from sink order by id", "-f", fmt)) == exported
    assert ok(cli("sql", "select * from sink order by id -- a trailing comment", "-f", fmt)) == exported


def test_postgresql_forms(shop: Shop, cli: Any) -> None:
    query = ("select ''::text as e, null::text as n, 0.1::float8 as f, 1.0::float8 as one, "
             "'2024-05-01 10:00:00.5+00'::timestamptz as at, 'infinity'::timestamp as inf, "
             "0.00000010 as small, true as ok")
    assert ok(cli("sql", f"set time zone 'UTC'; {query}", "-f", "csv")).splitlines() == [
        "e,n,f,one,at,inf,small,ok", '"",,0.1,1,2024-05-01 10:00:00.5+00,infinity,0.00000010,t']
    assert json.loads(ok(cli("sql", f"set time zone 'UTC'; {query}", "-f", "jsonl"))) == {
        "e": "", "n": None, "f": 0.1, "one": 1, "at": "2024-05-01T10:00:00.5+00:00", "inf": "infinity",
        "small": 1e-7, "ok": True}
    # one column: an empty string is "" (a line of its own would be a NULL)
    assert ok(cli("sql", "select x from (values (''), (null), ('a')) v(x)", "-f", "csv")) == 'x\n""\n\na\n'


def test_json_values_compact_on_one_line_and_a_column_named_like_the_row(shop: Shop, cli: Any) -> None:
    query = "select E'{\"a\":\\n 1, \"b\": [1.10, 2]}'::json as j, '{\"x\": 1}'::jsonb as r, 1 as q"
    assert ok(cli("sql", query, "-f", "jsonl")) == '{"j":{"a":1,"b":[1.10,2]},"r":{"x":1},"q":1}\n'
    assert ok(cli("sql", "select 1 as r, 2 as q", "-f", "json")) == '[\n{"r":1,"q":2}\n]\n'
    assert ok(cli("sql", "select 1 as r where false", "-f", "json")) == "[]\n"
    assert ok(cli("sql", "select 1 as r where false", "-f", "jsonl")) == ""
    # a json value's line break inside a composite: still one line
    nested = ok(cli("sql", "select row(E'[1,\\n2]'::json, 3) as c", "-f", "jsonl"))
    assert nested.count("\n") == 1 and json.loads(nested) == {"c": {"f1": [1, 2], "f2": 3}}


def test_table_export_jsonl_of_a_column_named_r(shop: Shop, cli: Any) -> None:
    """row_to_json(r) of a subquery with a column r encoded that column alone ({"f1":...})."""
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute("CREATE TABLE rr (r int, s text); INSERT INTO rr VALUES (1, 'a')")
    assert ok(cli("table", "export", "rr", "--format", "jsonl")) == '{"r":1,"s":"a"}\n'


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_an_error_before_the_first_row_prints_nothing(shop: Shop, cli: Any, fmt: str) -> None:
    result = cli("sql", "select 1/0 as x, 2 as y", "-f", fmt)
    assert result.exit_code == 5 and result.stdout == "" and "division by zero" in result.stderr
    result = cli("sql", "select 1 as a, 2 as a", "-f", fmt)
    assert result.exit_code == 5 and result.stdout == "" and "column 'a' twice" in result.stderr


def test_statements_without_rows_keep_the_rows_path(shop: Shop, cli: Any) -> None:
    assert ok(cli("sql", "show datestyle", "-f", "csv")).splitlines()[0] == "DateStyle"
    result = cli("sql", "select 1 as x into scratch", "-f", "jsonl")
    assert result.exit_code == 7 and result.stdout == "" and "use --write" in result.stderr
    assert json.loads(ok(cli("sql", "select count(*) as n from users", "-f", "json", "-q")) or "null") is None


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_a_backslash_in_a_string_cannot_smuggle_a_commit(shop: Shop, cli: Any, fmt: str) -> None:
    """Replays a hole: the splitter read 'x\\' as an unfinished string and the CSV probe went out
    through the simple protocol, so the server ran COMMIT and the UPDATE after it."""
    payload = ("select 'x\\' as b) q; commit; update users set name = 'pwned'; "
               "select * from (select 1 as a, 2 as c --'")
    result = cli("sql", payload, "-f", fmt)
    assert result.exit_code != 0 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert shop.scalar("SELECT count(*) FROM users WHERE name = 'pwned'") == 0


@pytest.mark.parametrize("text", [
    "select 'x\\', lo_export(1, '/tmp/dbcli-lo') as y --'",  # standard strings: \ is a plain character
    "set standard_conforming_strings = off; select 'a\\'' , lo_export(1, '/tmp/dbcli-lo'), '''' as z",
])
def test_names_hidden_in_a_string_by_either_reading_are_found(shop: Shop, cli: Any, text: str) -> None:
    result = cli("sql", text, "-f", "csv")
    assert result.exit_code == 7 and "lo_export" in result.stderr and result.stdout == "", result.stderr
