"""Whole-column checks of CSV text, for ``table import --skip-bad`` (which must find every bad line).

A batch of CSV records is checked column by column (or in one regular-expression match over its
text) against the catalog types; every cell these checks accept is one the full converter of
:mod:`dbcli.postgres.converters` accepts too, and COPY reads the same way. The import without
``--skip-bad`` leaves the cells to COPY (:mod:`dbcli.postgres.copy_csv_errors`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from dbcli.postgres.catalog import Column
from dbcli.postgres.converters import FALSE_TEXT, TRUE_TEXT, Converter, converter_for
from dbcli.postgres.csv_options import CsvOptions


class BadValue(ValueError):
    """Raised by a column check: ``index`` is the position of the first bad value."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


ColumnCheck = Callable[[Sequence[str]], None]

_SIGNED_INT = r"[ \t]*[+-]?\d{{1,{}}}[ \t]*"
# each written so that a string can match in one way only: \d+\.?\d* splits a run of digits in
# as many ways as it has digits, and a failed match of many such cells tries them all
_FLOAT = r"[ \t]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[ \t]*"
_BOOL_TEXT = frozenset(v for word in TRUE_TEXT | FALSE_TEXT for v in (word, word.upper(), word.capitalize()))


def _numeric_cell(col: Column) -> tuple[str, int] | None:
    """(regular expression of a valid cell, digits a plain cell may have) for a number column."""
    base = col.base_type
    if base in ("int2", "int4", "int8"):
        plain = {"int2": 4, "int4": 9, "int8": 18}[base]  # fewer digits than the type's limit
        return _SIGNED_INT.format(plain), plain
    if base == "numeric":
        whole = "+"
        plain = 1000
        if col.precision_scale is not None:
            precision, scale = col.precision_scale
            if precision <= scale:  # only a fraction: 0.5, .5, 0 (at least one digit)
                return r"[ \t]*[+-]?(?:0(?:\.\d*)?|\.\d+)[ \t]*", 0
            whole = f"{{1,{precision - scale}}}"
            plain = precision - scale
        return rf"[ \t]*[+-]?(?:\d{whole}(?:\.\d*)?|\.\d+)[ \t]*", plain
    if base in ("float4", "float8"):
        return _FLOAT, 0
    return None


# a CSV field on one line, as csv.reader and COPY both read it: quoted with its quotes doubled, or
# unquoted (written as an unrolled loop: a branch per character is three times slower in re)
_CSV_FIELD = r'(?:"[^"\r\n]*(?:""[^"\r\n]*)*"|[^,"\r\n]*)'
# delimiters the one-match check is written for: none can be part of a number or a boolean
REGEX_DELIMITERS = ",;|\t"


def csv_field_regex(col: Column, delimiter: str = ",", null: str = "") -> str | None:
    """A regular expression for a column's field as written in a CSV file (one line, before any
    unquoting) that matches only cells :func:`csv_column_check` accepts and COPY reads the same
    way; None for the types checked cell by cell.

    It lets a whole batch of records be checked in one match over its text, without splitting it
    into cells: numbers and booleans must be unquoted there (a quoted one is left to the full
    check, which reads "" as the empty string and an unquoted empty cell as NULL, as COPY does).
    ``null``: COPY's NULL text; when it is not the empty string, an empty cell is no NULL (a
    number column refuses it) and the NULL text is one.
    """
    empty_ok = not col.not_null or col.is_string
    number = _numeric_cell(col)
    if number is not None:
        cell = number[0]
    elif col.base_type == "bool":
        single = "".join(sorted(v for v in _BOOL_TEXT if len(v) == 1))
        cell = "|".join([f"[{single}]", *sorted((v for v in _BOOL_TEXT if len(v) > 1), key=str.lower)])
    elif col.is_string:
        limit = col.text_limit
        not_delim = re.escape(delimiter)
        if limit is None:
            return _CSV_FIELD.replace(",", not_delim)
        return rf'(?:[^{not_delim}"\r\n]{{0,{limit}}}|"[^"\r\n]{{0,{limit}}}")'
    else:
        return None
    if delimiter == "\t":
        cell = cell.replace(r"[ \t]", "[ ]")  # a tab around a number would be a delimiter here
    if not empty_ok:
        return f"(?:{cell})"
    return f"(?:{cell}|{re.escape(null)})" if null else f"(?:{cell})?"


def records_regex(columns: list[Column], options: CsvOptions | None = None) -> Callable[[str], Any] | None:
    """A match of a whole batch of one-line CSV records whose every cell passes its column's check.

    Most batches are like that, and one match over their text costs about a third of splitting
    them into cells with the csv module and checking those (bench/bench_tables.py); any batch it
    does not match (a bad cell, a quoted number, a line break inside quotes, a blank line) takes
    the full path, which reports or accepts it exactly. Not for one column: there a blank line
    would read as an empty cell, where the full path skips it.
    """
    options = options or CsvOptions()
    if options.delimiter not in REGEX_DELIMITERS or options.quote != '"' or options.escape not in (None, '"'):
        return None
    fields = []
    for col in columns:
        field = csv_field_regex(col, options.delimiter, options.null)
        if field is None:
            return None
        fields.append(field)
    if len(fields) < 2:
        return None
    return re.compile("(?:" + re.escape(options.delimiter).join(fields) + r"\r?\n)*+", re.ASCII).fullmatch


def csv_column_check(col: Column) -> ColumnCheck | None:
    """A check of a whole column of CSV cells, as PostgreSQL's COPY will read them (None: no check).

    Common cells are matched in C: one regular expression over the column's cells joined by
    newlines, or a set test. Anything else goes through the column's full converter, which
    accepts it or says why not. An empty cell is NULL (COPY's CSV rule), so it is only accepted
    in a nullable column, or in a NOT NULL text column (loaded with FORCE_NOT_NULL, so it is the
    empty string there).
    """
    convert = converter_for(col)
    empty_ok = not col.not_null or col.is_string
    base = col.base_type
    number = _numeric_cell(col)
    cell: str | None = number[0] if number else None
    plain: int | None = number[1] if number else None  # cells of at most this many digits and dots need no regex
    if base == "bool":
        allowed = _BOOL_TEXT | ({""} if empty_ok else set())

        def check_bool(values: Sequence[str]) -> None:
            if not allowed.issuperset(values):
                _first_failure(values, allowed.__contains__, convert, empty_ok)
        return check_bool
    elif col.is_string:
        # any text is valid text (NUL characters are checked once per batch by the caller)
        limit = col.text_limit
        if limit is None:
            return None

        def check_text(values: Sequence[str]) -> None:
            if max(map(len, values), default=0) > limit:
                _first_failure(values, lambda v: len(v.rstrip(" ")) <= limit, convert, empty_ok)
        return check_text
    if cell is None:
        def check_each(values: Sequence[str]) -> None:
            _first_failure(values, None, convert, empty_ok)
        return check_each

    one = f"(?:{cell})?" if empty_ok else f"(?:{cell})"
    single = re.compile(one, re.ASCII).fullmatch  # ASCII: \d must not take other scripts' digits
    joined = re.compile(f"{one}(?:\n{one})*", re.ASCII).fullmatch  # a whole column in one call

    dots = 1 if base == "numeric" else 0

    def check(values: Sequence[str]) -> None:
        if plain and _plain_numbers(values, plain, dots, empty_ok):
            return
        text = "\n".join(values)
        # the newline count proves no cell holds a newline of its own (which would split it in two)
        if text.count("\n") == len(values) - 1 and joined(text):
            return
        _first_failure(values, single, convert, empty_ok)
    return check


def _plain_numbers(values: Sequence[str], width: int, dots: int, empty_ok: bool) -> bool:
    """True when every cell is 1..width digits with at most ``dots`` dots (all tests run in C).

    The common case of integer and decimal columns; anything else (signs, exponents, spaces,
    long values) is left to the regular expression.
    """
    if not values or max(map(len, values)) > width:
        return False
    if not empty_ok and min(map(len, values)) == 0:
        return False
    joined = "".join(values)
    if dots:
        if max(map(str.count, values, itertools.repeat("."))) > dots or "." in values:
            return False
        joined = joined.replace(".", "")
    if not joined:
        return empty_ok
    return joined.isascii() and joined.isdigit()  # isdigit alone also takes '²' and other scripts' digits


def _first_failure(values: Sequence[str], fast: Callable[[str], Any] | None, convert: Converter,
                   empty_ok: bool) -> None:
    for i, value in enumerate(values):
        if fast is not None and fast(value):
            continue
        if value == "":
            if empty_ok:
                continue
            raise BadValue(i, "null value in a not-null column")
        try:
            convert(value)
        except ValueError as e:
            raise BadValue(i, str(e)) from None
