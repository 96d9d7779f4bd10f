"""The CSV fast path of dbcli table import: raw text to COPY, which checks the cells; its errors read as before."""

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


# COPY checks the cells (issue 19 item 2); its errors read as the client-side checks' did

def test_server_errors_after_a_later_multiline_row_name_the_right_line(notes: Shop, cli: Any) -> None:
    # COPY counts the line breaks inside quotes (except in the first record it reads): a duplicate
    # after a two-line record that is not the first was left without its line before
    body = 'id,body\n1,a\n2,"x\ny"\n\n1,dup\n'
    result = cli("table", "import", "notes", "-", input=body)
    assert result.exit_code == 7
    assert result.stderr.startswith('Error: line 6: duplicate key value violates unique constraint "notes_pkey"')
    result = cli("table", "import", "notes", "-", input='id,body,n\n1,a,1\n2,"x\ny\nz",2\n3,c,99999\n')
    assert result.stderr == "Error: line 6, column n: value out of range for smallint: '99999'\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


def test_crlf_lines_and_quoted_crlf(notes: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b'id,body,n\r\n1,a,1\r\n2,"x\r\ny",2\r\n3,c,x\r\n')
    result = cli("table", "import", "notes", str(path))
    assert result.stderr == "Error: line 5, column n: invalid input for smallint: 'x'\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


@pytest.mark.parametrize(("row", "message"), [
    ("x,b,1", "column id: invalid input for integer: 'x'"),
    ("2,b,1e3", "column n: invalid input for smallint: '1e3'"),
    ('2,"b",""', "column n: invalid input for smallint: ''"),  # quoted: the empty string, not NULL
    (",b,2", "column id: null value in a not-null column"),
    ('"2\n3",b,2', "column id: invalid input for integer: '2\\n3'"),
    # longer than the 100 bytes COPY quotes: the message shows the value's start, as before
    ("2,b," + "x" * 150, "column code: value too long for character varying(3): '" + "x" * 56 + "..."),
    ("2,b," + "9" * 150, "column n: value out of range for smallint: '" + "9" * 56 + "..."),
    ("2,b", "expected 3 fields, got 2"),
    ("2,b,1,x,y", "expected 3 fields, got 5"),
    ("2," + "b" * 150, "expected 3 fields, got 2"),
    ("2," + "b" * 150 + ",2,4", "extra data after last expected column"),  # COPY cannot say how many
])
def test_copy_errors_read_as_the_checks_did(notes: Shop, cli: Any, monkeypatch: pytest.MonkeyPatch, row: str,
                                            message: str) -> None:
    from dbcli.postgres import copy_csv

    monkeypatch.setattr(copy_csv, "CSV_BATCH_BYTES", 1)  # a line a batch: the bad one sent as it is
    header = "id,body,code" if "code" in message else "id,body,n"
    result = cli("table", "import", "notes", "-", input=f"{header}\n1,a,1\n{row}\n")
    assert result.exit_code == 5
    where = "line 4" if row.startswith('"2\n') else "line 3"
    assert result.stderr == f"Error: {where}{',' if message.startswith('column') else ':'} {message}\n"
    assert notes.scalar("SELECT count(*) FROM notes") == 0


def test_what_no_converter_refuses_keeps_the_server_message(notes: Shop, cli: Any) -> None:
    notes.execute("CREATE TYPE mood AS ENUM ('ok', 'sad'); ALTER TABLE notes ADD COLUMN m mood")
    result = cli("table", "import", "notes", "-", input="id,body,m\n1,a,ok\n2,b,glad\n")
    assert result.exit_code == 5
    assert result.stderr == 'Error: line 3, column m: invalid input value for enum mood: "glad"\n'
    assert notes.scalar("SELECT count(*) FROM notes") == 0


@pytest.mark.parametrize("body", ['id,body,n\n1,"a\nb",1\n2,c,2\n3,d,x\n', 'id,body,n\n1,a,1\n2,"b\nc",2\n3,d,x\n',
                                  'id,body,n\n1,a,1\n\n2,"b\nc",2\n3,d,x\n'])
def test_lines_of_batches_sent_as_they_are(notes: Shop, cli: Any, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    from dbcli.postgres import copy_csv

    monkeypatch.setattr(copy_csv, "CSV_BATCH_BYTES", 1)  # a record a batch: the first parsed, the others sent as is
    result = cli("table", "import", "notes", "-", input=body)
    line = body.count("\n")
    assert result.stderr == f"Error: line {line}, column n: invalid input for smallint: 'x'\n"
    result = cli("table", "import", "notes", "-", "-f", "json", input=body.replace(",x\n", ",3\n"))
    assert result.exit_code == 0 and result.json()["rows"] == 3, result.stderr
