"""dbcli table import: the CSV options of files as people have them (issue 16 item 7).

--null, --delimiter / tsv, --no-header / --columns, --encoding, --quote / --escape, and
--skip-bad N with its reject file; every combination that makes no sense is a one-line usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fix_tables import Shop

FLIGHTS = """
CREATE TABLE flights (
    year      smallint NOT NULL,
    month     smallint,
    dep_delay numeric,
    carrier   text,
    tailnum   varchar(6),
    cancelled boolean
);
"""


@pytest.fixture
def flights(shop: Shop) -> Shop:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        conn.execute(FLIGHTS.encode())
    return shop


def _rows(shop: Shop, query: str = "SELECT * FROM flights ORDER BY year, month NULLS FIRST, carrier") -> list[Any]:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        return [tuple(r) for r in conn.execute(query.encode()).fetchall()]


def _usage(result: Any, text: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and text in result.stderr, result.stderr


def test_na_for_null_replays_the_nyc_flights_case(flights: Shop, cli: Any, tmp_path: Path) -> None:
    # the NYC flights 2013 tables write missing values as NA, as R does
    path = tmp_path / "flights.csv"
    path.write_text("year,month,dep_delay,carrier,tailnum,cancelled\n"
                    "2013,1,2,UA,N14228,f\n2013,NA,NA,NA,NA,NA\n")
    result = cli("table", "import", "flights", str(path))
    assert result.exit_code == 5 and "line 3, column month: invalid input for smallint: 'NA'" in result.stderr
    assert _rows(flights) == []
    result = cli("table", "import", "flights", str(path), "--null", "NA")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights) == [(2013, None, None, None, None, None), (2013, 1, 2, "UA", "N14228", False)]


def test_na_in_a_not_null_column_is_named(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("year,month\nNA,1\n")
    result = cli("table", "import", "flights", str(path), "--null", "NA")
    assert result.exit_code == 5 and "line 2, column year: null value in a not-null column" in result.stderr


def test_with_null_text_an_empty_cell_is_no_null(flights: Shop, cli: Any, tmp_path: Path) -> None:
    # COPY's rule: with NULL 'NA' an unquoted empty cell is the empty string, which a number refuses
    path = tmp_path / "f.csv"
    path.write_text("year,month,carrier\n2013,1,\n2013,,AA\n")
    result = cli("table", "import", "flights", str(path), "--null", "NA")
    assert result.exit_code == 5 and result.stderr.startswith("Error: line 3, column month:"), result.stderr
    assert _rows(flights) == []


@pytest.mark.parametrize("args,name", [(["--delimiter", ";"], "f.csv"), (["--delimiter", "\\t"], "f.csv"),
                                       (["--delimiter", "tab"], "f.csv"), ([], "f.tsv"),
                                       (["--input-format", "tsv"], "f.txt")])
def test_delimiters_and_tsv(flights: Shop, cli: Any, tmp_path: Path, args: list[str], name: str) -> None:
    sep = ";" if ";" in args else "\t"
    path = tmp_path / name
    path.write_text(sep.join(["year", "month", "carrier"]) + "\n" + sep.join(["2013", "2", "a,b"]) + "\n"
                    + sep.join(["2013", "x", "c"]) + "\n")
    result = cli("table", "import", "flights", str(path), *args)
    assert result.exit_code == 5 and "line 3, column month: invalid input for smallint: 'x'" in result.stderr
    path.write_text(path.read_text().replace("x", "3"))
    result = cli("table", "import", "flights", str(path), *args)
    assert result.exit_code == 0, result.stderr
    assert _rows(flights, "SELECT month, carrier FROM flights ORDER BY month") == [(2, "a,b"), (3, "c")]


def test_no_header_takes_the_table_columns_in_order(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("2013,1,1.5,UA,N1,t\n2013,2,,AA,N2,f\n")
    result = cli("table", "import", "flights", str(path), "--no-header")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights) == [(2013, 1, 1.5, "UA", "N1", True), (2013, 2, None, "AA", "N2", False)]


def test_columns_name_the_file_columns(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("UA,2013\nAA,2014\n")
    result = cli("table", "import", "flights", str(path), "--no-header", "--columns", "carrier, year")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights, "SELECT carrier, year FROM flights ORDER BY year") == [("UA", 2013), ("AA", 2014)]
    # with a header line: its names are replaced (and the line skipped)
    path.write_text("Carrier Code,Year\nDL,2015\n")
    result = cli("table", "import", "flights", str(path), "--columns", "carrier,year")
    assert result.exit_code == 0, result.stderr
    assert ("DL", 2015) in _rows(flights, "SELECT carrier, year FROM flights")


def test_columns_are_checked_against_the_catalog(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("UA,2013\n")
    result = cli("table", "import", "flights", str(path), "--no-header", "--columns", "carier,year")
    assert result.exit_code == 5 and "unknown column 'carier' of flights (closest match: carrier)" \
        in result.stderr
    result = cli("table", "import", "flights", str(path), "--no-header", "--columns", 'year,"year"; drop table x')
    assert result.exit_code == 5 and "unknown column" in result.stderr
    result = cli("table", "import", "flights", str(path), "--no-header", "--columns", "year,year")
    assert result.exit_code == 5 and "--columns repeats a column name" in result.stderr
    path.write_text("UA,2013,1\n")
    result = cli("table", "import", "flights", str(path), "--no-header", "--columns", "carrier,year")
    assert result.exit_code == 5 and "line 1: expected 2 fields, got 3" in result.stderr
    assert _rows(flights) == []


def test_latin1_file(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("year;carrier\n2013;Lufthansa Ü\n".encode("latin-1"))
    result = cli("table", "import", "flights", str(path), "--delimiter", ";")
    assert result.exit_code == 5 and "the input is not UTF-8 text" in result.stderr
    result = cli("table", "import", "flights", str(path), "--delimiter", ";", "--encoding", "latin1")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights, "SELECT carrier FROM flights") == [("Lufthansa Ü",)]


def test_quote_and_escape(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("year,carrier\n2013,'it''s, ok'\n")
    result = cli("table", "import", "flights", str(path), "--quote", "'")
    assert result.exit_code == 0, result.stderr
    path.write_text('year,carrier\n2014,"say \\"hi\\", ok"\n')
    result = cli("table", "import", "flights", str(path), "--escape", "\\")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights, "SELECT carrier FROM flights ORDER BY year") == [("it's, ok",), ('say "hi", ok',)]


def test_big_file_takes_the_batch_checks_with_options(flights: Shop, cli: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dbcli.postgres import copy_csv

    monkeypatch.setattr(copy_csv, "CSV_BATCH_BYTES", 64)
    path = tmp_path / "f.tsv"
    lines = [f"2013\t{m % 12 + 1}\t{'NA' if m % 3 else m / 4}\tUA\tN{m}\t{'NA' if m % 5 else 't'}" for m in range(300)]
    lines[250] = "2013\t13.5\tNA\tUA\tN1\tt"
    path.write_text("\n".join(lines) + "\n")
    result = cli("table", "import", "flights", str(path), "--no-header", "--null", "NA")
    assert result.exit_code == 5 and "line 251, column month: invalid input for smallint: '13.5'" in result.stderr
    del lines[250]
    path.write_text("\n".join(lines) + "\n")
    result = cli("table", "import", "flights", str(path), "--no-header", "--null", "NA")
    assert result.exit_code == 0, result.stderr
    assert _rows(flights, "SELECT count(*), count(dep_delay), count(cancelled) FROM flights") == [(299, 100, 59)]


def test_skip_bad_sets_lines_aside(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    text = ("year,month,carrier\n2013,1,UA\n2013,x,AA\n2013,2,\"multi\nline\"\n2013,3\n"
            "2013,4,DL\n99999,5,B6\n")
    path.write_text(text)
    result = cli("table", "import", "flights", str(path), "--skip-bad", "2", "-f", "json")
    assert result.exit_code == 5 and "more than 2 bad line(s)" in result.stderr and "line 8" in result.stderr
    assert _rows(flights) == [] and not Path(f"{path}.rejects").exists()
    result = cli("table", "import", "flights", str(path), "--skip-bad", "3", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert '"rows":3' in result.stdout and '"rejected":3' in result.stdout
    assert "3 bad line(s) skipped" in result.stderr and "line 3: column month" in result.stderr
    assert Path(f"{path}.rejects").read_text() == "year,month,carrier\n2013,x,AA\n2013,3\n99999,5,B6\n"
    assert _rows(flights, "SELECT month FROM flights ORDER BY month") == [(1,), (2,), (4,)]


def test_skip_bad_with_a_reject_file_and_nothing_bad(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path, rejects = tmp_path / "f.csv", tmp_path / "bad.csv"
    path.write_text("year\n2013\n")
    result = cli("table", "import", "flights", str(path), "--skip-bad", "5", "--reject-file", str(rejects))
    assert result.exit_code == 0 and "0 bad line(s) skipped" in result.stderr and not rejects.exists()
    path.write_text("year\n2013\nnope\n")
    result = cli("table", "import", "flights", str(path), "--skip-bad", "5", "--reject-file", str(rejects))
    assert result.exit_code == 0 and rejects.read_text() == "year\nnope\n"


def test_skip_bad_cannot_skip_what_only_the_server_finds(flights: Shop, cli: Any, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(flights.conninfo) as conn:
        conn.execute("ALTER TABLE flights ADD CHECK (month <= 12)")
    path = tmp_path / "f.csv"
    path.write_text("year,month\n2013,1\n2013,13\n")
    result = cli("table", "import", "flights", str(path), "--skip-bad", "5")
    assert result.exit_code != 0 and "line 3" in result.stderr
    assert _rows(flights) == []


@pytest.mark.parametrize("args,message", [
    (["--reject-file", "x"], "--reject-file needs --skip-bad N"),
    (["--delimiter", "ab"], "--delimiter must be one character"),
    (["--delimiter", ",", "--quote", ","], "--delimiter and --quote must differ"),
    (["--null", "a,b"], "--null cannot contain the delimiter"),
    (["--encoding", "klingon"], "--encoding 'klingon': unknown encoding"),
    (["--input-format", "jsonl", "--null", "NA"], "--null applies to csv and tsv only, not jsonl"),
    (["--input-format", "json", "--columns", "year"], "--columns applies to csv and tsv only, not json"),
    (["--input-format", "jsonl", "--skip-bad", "1"], "--skip-bad applies to csv and tsv only"),
    (["--input-format", "tsv", "--delimiter", ";"], "--delimiter cannot change tsv's tab"),
    (["--skip-bad", "-1"], "-1"),
])
def test_options_that_make_no_sense(flights: Shop, cli: Any, tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text("year\n2013\n")
    result = cli("table", "import", "flights", str(path), *args)
    if message == "-1":  # Typer's own range check
        assert result.exit_code == 2
    else:
        _usage(result, message)
    assert _rows(flights) == []


def test_csv_options_on_a_sniffed_json_file(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.data"
    path.write_text('{"year": 2013}\n')
    _usage(cli("table", "import", "flights", str(path), "--null", "NA"), "the CSV options apply to csv and tsv")


def test_reject_file_keeps_the_input_encoding(flights: Shop, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("year;carrier\n2013;Ü ok\nzwei;Ü bad\n".encode("latin-1"))
    result = cli("table", "import", "flights", str(path), "--delimiter", ";", "--encoding", "latin1",
                 "--skip-bad", "1")
    assert result.exit_code == 0, result.stderr
    assert Path(f"{path}.rejects").read_bytes() == "year;carrier\nzwei;Ü bad\n".encode("latin-1")


def test_encrypted_table_with_csv_options(shop: Shop, cli: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Encrypted columns go record by record both ways; the dialect options hold there too."""
    import yaml

    from dbcli.encryption.fields import generate_key

    cfg = yaml.safe_load(shop.config.read_text())
    cfg["encryption"] = {"key": "${DBCLI_DATA_KEY:-}", "columns": {"user_profiles": ["phone"]}}
    shop.config.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("DBCLI_DATA_KEY", generate_key())
    path = tmp_path / "p.tsv"
    path.write_text("1\t+1 555 0100\tNA\n2\tNA\tNA\n")
    result = cli("table", "import", "user_profiles", str(path), "--no-header", "--columns",
                 "user_id,phone,date_of_birth", "--null", "NA")
    assert result.exit_code == 0, result.stderr
    assert shop.scalar("SELECT count(*) FROM user_profiles WHERE phone LIKE 'enc:%'") == 1
    result = cli("table", "export", "user_profiles", "--columns", "user_id,phone", "--order-by", "user_id",
                 "--format", "tsv", "--null", "NA", "--no-header")
    assert result.exit_code == 0 and result.stdout == "1\t+1 555 0100\n2\tNA\n", result.stderr
    result = cli("table", "import", "user_profiles", str(path), "--skip-bad", "1")
    assert result.exit_code == 5 and "--skip-bad is not available" in result.stderr
