"""The CSV fast path of dbcli table import: raw text to COPY, checked client-side batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fix_tables import Shop

NOTES = "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL, extra text, code varchar(3), n smallint)"


@pytest.fixture
def notes(shop: Shop) -> Shop:
    shop.execute(NOTES)
    return shop


def test_quoted_newlines_blank_lines_bom_and_no_final_newline(notes: Shop, cli: Any) -> None:
    body = ('\ufeffid,body,extra\n1,"two\nlines","say ""hi"""\n\n2,plain,\n3,"",""\n'
            '4,"x, y",last')
    result = cli("table", "import", "notes", "-", "-f", "json", input=body)
    assert result.exit_code == 0, result.stderr
    assert result.json()["rows"] == 4
    assert notes.query("SELECT id, body, extra FROM notes ORDER BY id") == [
        (1, "two\nlines", 'say "hi"'), (2, "plain", None), (3, "", ""), (4, "x, y", "last")]


def test_line_numbers_count_physical_lines(notes: Shop, cli: Any) -> None:
    body = 'id,body,n\n1,"a\nb\nc",1\n\n2,ok,2\n3,bad,70000\n'
    result = cli("table", "import", "notes", "-", input=body)
    assert result.exit_code == 5
    assert result.stderr == "Error: line 7, column n: value out of range for smallint: '70000'\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


def test_server_errors_after_multiline_rows_name_the_right_line(notes: Shop, cli: Any) -> None:
    body = 'id,body\n1,"a\nb"\n2,x\n1,dup\n'
    result = cli("table", "import", "notes", "-", input=body)
    assert result.exit_code == 7
    assert result.stderr.startswith('Error: line 5: duplicate key value violates unique constraint "notes_pkey"')


@pytest.mark.parametrize(("body", "message"), [
    ("id,body\n1,a\n2,b,c\n", "line 3: expected 2 fields, got 3"),
    ("id,body\n1\n", "line 2: expected 2 fields, got 1"),
    ("id,body,code\n1,a,abcd\n", "line 2, column code: value too long for character varying(3): 'abcd'"),
    ("id,body\n,a\n", "line 2, column id: null value in a not-null column"),
    ("id,body\n1.5,a\n", "line 2, column id: invalid input for integer: '1.5'"),
    ("id,body\n1,a\x00b\n", "line 2: NUL characters are not allowed in CSV text"),
    ('id,body\n"1\n2",a\n', "line 3, column id: invalid input for integer: '1\\n2'"),
    ("id,body,n\n1,a,1e3\n", "line 2, column n: invalid input for smallint: '1e3'"),
    ("id,body,n\n1,a,\u0663\n", "line 2, column n: invalid input for smallint: '\u0663'"),
    ("id,id\n1,2\n", "line 1: the CSV header repeats a column name"),
    ("id,bdy\n1,2\n", "unknown column 'bdy' of notes (closest match: body)"),
])
def test_bad_csv(notes: Shop, cli: Any, body: str, message: str) -> None:
    result = cli("table", "import", "notes", "-", input=body)
    assert result.exit_code == 5
    assert result.stderr == f"Error: {message}\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


def test_many_batches(notes: Shop, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbcli.postgres import copy_csv

    monkeypatch.setattr(copy_csv, "CSV_BATCH_BYTES", 64)
    lines = ["id,body,n"] + [f'{i},"row\n{i}",{i % 100}' if i % 50 == 0 else f"{i},row {i},{i % 100}"
                             for i in range(1, 1001)]
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n")
    result = cli("table", "import", "notes", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["rows"] == 1000
    assert notes.scalar("SELECT body FROM notes WHERE id = 100") == "row\n100"
    path.write_text("\n".join([*lines, "1001,late,70000"]) + "\n")
    notes.execute("TRUNCATE notes")
    result = cli("table", "import", "notes", str(path))
    assert result.exit_code == 5
    assert result.stderr == "Error: line 1022, column n: value out of range for smallint: '70000'\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


def test_numeric_precision_and_spellings(shop: Shop, cli: Any) -> None:
    body = "sku,product_name,price,active\nA,a, 1.5 ,TRUE\nB,b,1e2,no\nC,c,.25,\n"
    result = cli("table", "import", "products", "-", input=body)
    assert result.exit_code == 5  # active is NOT NULL: an empty cell is NULL there
    assert result.stderr == "Error: line 4, column active: null value in a not-null column\n"
    result = cli("table", "import", "products", "-", input=body.replace(".25,", ".25,t"))
    assert result.exit_code == 0, result.stderr
    assert shop.query("SELECT sku, price::text, active FROM products WHERE sku IN ('A', 'B', 'C') ORDER BY sku") == [
        ("A", "1.50", True), ("B", "100.00", False), ("C", "0.25", True)]
    result = cli("table", "import", "products", "-", input="sku,product_name,price\nD,d,12345678901\n")
    assert result.exit_code == 5
    assert result.stderr == ("Error: line 2, column price: numeric field overflow for numeric(12,2): "
                             "'12345678901'\n")


def test_upsert_through_the_fast_path(notes: Shop, cli: Any) -> None:
    assert cli("table", "import", "notes", "-", input="id,body\n1,a\n2,b\n").exit_code == 0
    result = cli("table", "import", "notes", "-", "--upsert", "-f", "json", input="id,body\n2,B\n3,C\n")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"table": "notes", "rows": 2, "inserted": 1, "updated": 1, "unchanged": 0}
    assert notes.query("SELECT id, body FROM notes ORDER BY id") == [(1, "a"), (2, "B"), (3, "C")]
