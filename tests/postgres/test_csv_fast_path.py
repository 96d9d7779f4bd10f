"""The one-match check of whole CSV batches (--skip-bad) never accepts what the cell-by-cell path refuses."""

from __future__ import annotations

import io
import random
import time

import pytest

from dbcli.postgres.catalog import Column
from dbcli.postgres.converters import converter_for
from dbcli.postgres.csv_batches import batch_text, csv_batch
from dbcli.postgres.csv_checks import BadValue, csv_column_check, records_regex


def _col(name: str, base: str, category: str, typmod: int = -1, not_null: bool = False) -> Column:
    return Column(name, base, base, category, typmod, None, not_null, "", "", None, None)


def _numeric(precision: int, scale: int) -> int:
    return (precision << 16 | scale) + 4


COLUMNS = [
    _col("i2", "int2", "N"), _col("i4", "int4", "N", not_null=True), _col("i8", "int8", "N"),
    _col("n", "numeric", "N", _numeric(5, 2)), _col("nn", "numeric", "N", not_null=True),
    _col("n22", "numeric", "N", _numeric(2, 2)), _col("f", "float8", "N", not_null=True),
    _col("b", "bool", "B"), _col("bn", "bool", "B", not_null=True),
    _col("t", "text", "S", not_null=True), _col("v", "varchar", "S", 3 + 4), _col("c", "bpchar", "S", 2 + 4),
]

CELLS = ["", '""', '"1"', "1", " 1", "1 ", "\t7", "+1", "-0", "12", "999", "9999", "32767", "32768", "99999",
         "123456789", "1234567890", "1e3", "1.5", ".5", "5.", "-.5", "123.45", "1234.5", "0.01", "1.999",
         "abc", "t", "f", "TRUE", "False", "yes", "Y", "on", "OFF", "2", "truee", "tru", '"t"',
         '"a,b"', '"a""b"', '""""', '"ab', 'ab"c', "\u0663", "²", "x" * 4, "xy", "xyz", '"xyz"', '"xyzw"',
         '"a\nb"', "a\rb", "1,2"]


@pytest.mark.parametrize("seed", range(40))
def test_batch_match_implies_the_full_path_accepts_the_same(seed: int) -> None:
    rnd = random.Random(seed)
    columns = rnd.sample(COLUMNS, rnd.randint(2, 5))
    records = records_regex(columns)
    assert records is not None
    checks = [(i, csv_column_check(c)) for i, c in enumerate(columns)]
    matched = 0
    for _ in range(400):
        # a batch of a few lines, each cell usually valid for its column, sometimes anything
        lines = []
        for _ in range(rnd.randint(1, 4)):
            cells = [rnd.choice(CELLS) if rnd.random() < 0.3 else rnd.choice(_good(c)) for c in columns]
            lines.append(",".join(cells) + rnd.choice(["\n", "\r\n", "\r", ""]))
        # split as the import reads a file (open(..., newline="")), joined as it sends a batch
        chunk = io.StringIO("".join(lines), newline="").readlines()
        text = batch_text(chunk)
        if not records(text):
            continue
        matched += 1
        rows, batch = csv_batch(chunk, 1, len(columns))
        assert (len(rows), batch.text, batch.ends) == (len(chunk), text, None), text
        for i, check in checks:
            if check is not None:
                try:
                    check([row[i] for row in rows])
                except BadValue as e:
                    pytest.fail(f"{text!r}: the batch matched, but column {columns[i].name} refuses it: {e}")
            # and the column's converter, which the patterns do not share, takes every cell
            col = columns[i]
            for row in rows:
                if row[i] == "":
                    assert not col.not_null or col.is_string, (text, col.name)
                else:
                    converter_for(col)(row[i])
    assert matched > 5  # the property was tried on accepted batches, not only on refused ones


def _good(col: Column) -> list[str]:
    by_type = {"int2": ["1", "-12", "32767"], "int4": ["0", "123456789"], "int8": ["-5", "42"],
               "numeric": ["1.5", "123.45", ".5"], "float8": ["1e3", "-2.5"], "bool": ["t", "false", "Yes"],
               "text": ['"a,b"', "plain", '"q""uote"'], "varchar": ["ab", '"a,b"'], "bpchar": ["ab"]}
    return by_type[col.base_type] + ([""] if not col.not_null else [])


def test_not_for_one_column_or_types_checked_cell_by_cell() -> None:
    assert records_regex([_col("t", "text", "S")]) is None  # a blank line would be a row
    assert records_regex([_col("t", "text", "S"), _col("d", "date", "D")]) is None


def test_a_failing_match_does_not_backtrack_for_long() -> None:
    # a line break inside quotes (valid CSV) fails the match at the end of a line of long numbers
    floats = [_col(f"f{i}", "float8", "N") for i in range(6)]
    records = records_regex([*floats, _col("t", "text", "S")])
    assert records is not None
    line = ",".join(["1" * 60] * 6) + ",x\n"
    text = line * 2000 + ",".join(["1" * 60] * 6) + ',"a\nb"\n'
    started = time.monotonic()
    assert not records(text)
    check = csv_column_check(floats[0])
    assert check is not None
    check(["12"] * 40 + ["NaN"])  # the column check's own expression over many cells, then one it leaves
    assert time.monotonic() - started < 2


def test_a_cr_only_file_keeps_its_line_breaks() -> None:
    chunk = io.StringIO("4,abc\r", newline="").readlines()
    assert batch_text(chunk) == "4,abc\r"  # not "\r\n": COPY takes one line-break style per file
    assert batch_text(["4,abc"]) == "4,abc\n"


def test_what_the_match_leaves_to_the_full_path() -> None:
    records = records_regex([_col("i", "int4", "N", not_null=True), _col("t", "text", "S")])
    assert records is not None
    assert records("1,a\n2,\"b,c\"\r\n")
    for text in ['"1",a\n', ",a\n", "1,a\n\n2,b\n", '1,"a\nb"\n', "1,a,b\n", "1\n", "1234567890,a\n", '1,a"b\n',
                 "1,a\r"]:
        assert not records(text), text
