"""Values converted to their column's type before they reach SQL.

Every value a user gives (command-line text, CSV cells, JSON values) is checked against its
column's type here, so a bad value fails with exit 5 and a message naming its row and column,
before the server sees anything.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from dbcli.errors import InvalidInputError
from dbcli.output import to_json
from dbcli.postgres.catalog import STRING_TYPES, Column, Table

Converter = Callable[[Any], Any]

_INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1),
               "oid": (0, 2**32 - 1)}
# the boolean text PostgreSQL reads (any case, surrounding spaces allowed)
TRUE_TEXT = frozenset({"t", "true", "y", "yes", "on", "1"})
FALSE_TEXT = frozenset({"f", "false", "n", "no", "off", "0"})


def shown(value: Any) -> str:
    """A value as error messages quote it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def converter_for(col: Column) -> Converter:
    """A function turning an input value (text or JSON-typed) into the value bound for ``col``.

    It raises ValueError with a message such as ``invalid input for numeric: 'abc'``. Types not
    checked here (enums, geometric, network, ranges, unusual date text) are passed on as text and
    checked by the server.
    """
    base, label = col.base_type, col.data_type
    if base in _INT_RANGES:
        return _int_converter(label, *_INT_RANGES[base])
    if base == "numeric":
        return _numeric_converter(label, col.precision_scale)
    if base in ("float4", "float8"):
        return _float_converter(label)
    if base == "bool":
        return _bool_converter(label)
    if base in STRING_TYPES:
        return _string_converter(label, col.text_limit)
    if base in ("json", "jsonb"):
        return _json_converter(label)
    if base == "uuid":
        return _uuid_converter(label)
    if base == "bytea":
        return _bytea_converter(label)
    if base in ("date", "timestamp", "timestamptz", "time", "timetz"):
        return _datetime_converter(label, base)
    if col.category == "A":
        return _array_converter(label, col)
    return _text_passthrough(label)


def _bad(label: str, value: Any, why: str = "invalid input") -> ValueError:
    return ValueError(f"{why} for {label}: {shown(value)}")


def _int_converter(label: str, lo: int, hi: int) -> Converter:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, str):
            try:
                if not v.isascii():  # Python reads other scripts' digits, PostgreSQL does not
                    raise ValueError(v)
                n = int(v)
            except ValueError:
                raise _bad(label, v) from None
        elif isinstance(v, bool):
            raise _bad(label, v)
        elif isinstance(v, int):
            n = v
        elif isinstance(v, float | Decimal) and v == v and v not in (float("inf"), float("-inf")) \
                and v == int(v):
            n = int(v)
        else:
            raise _bad(label, v)
        if not lo <= n <= hi:
            raise _bad(label, v, "value out of range")
        return n
    return conv


def _numeric_converter(label: str, precision_scale: tuple[int, int] | None) -> Converter:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or (isinstance(v, str) and ("_" in v or not v.isascii())):
            raise _bad(label, v)
        try:
            d = Decimal(v.strip() if isinstance(v, str) else repr(v) if isinstance(v, float) else v)
        except (InvalidOperation, TypeError, ValueError):
            raise _bad(label, v) from None
        if precision_scale is not None and not d.is_nan() \
                and (not d.is_finite() or _overflows(d, *precision_scale)):
            raise _bad(label, v, "numeric field overflow")
        return d
    return conv


def _overflows(d: Decimal, precision: int, scale: int) -> bool:
    if not d:
        return False
    if d.adjusted() > precision - scale:
        return True
    try:
        rounded = d.quantize(Decimal(1).scaleb(-scale))
    except InvalidOperation:
        return True
    return bool(rounded) and rounded.adjusted() >= precision - scale


def _float_converter(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or (isinstance(v, str) and ("_" in v or not v.isascii())):
            raise _bad(label, v)
        try:
            return float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError):
            raise _bad(label, v) from None
    return conv


def _bool_converter(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        if isinstance(v, str):
            low = v.strip().lower()
            if low in TRUE_TEXT:
                return True
            if low in FALSE_TEXT:
                return False
        raise _bad(label, v)
    return conv


def _string_converter(label: str, limit: int | None) -> Converter:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, str):
            if isinstance(v, dict | list):
                v = json.dumps(v, ensure_ascii=False)
            elif isinstance(v, bool):
                v = "true" if v else "false"
            else:
                v = str(v)
        if "\x00" in v:
            raise _bad(label, v, "NUL character not allowed")
        if limit is not None and len(v.rstrip(" ")) > limit:
            raise _bad(label, v, "value too long")
        return v
    return conv


def _json_converter(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, str):
            # text (CSV cells, --where and --set values) holds a JSON document
            try:
                json.loads(v)
            except ValueError:
                raise _bad(label, v) from None
            return v
        return to_json(v)
    return conv


def _json_typed_converter(label: str) -> Converter:
    # values from JSON input are already parsed: a string is a JSON string, not JSON text
    def conv(v: Any) -> Any:
        if v is None:
            return None
        return to_json(v)
    return conv


def _uuid_converter(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or isinstance(v, uuid.UUID):
            return v
        try:
            return uuid.UUID(str(v).strip())
        except ValueError:
            raise _bad(label, v) from None
    return conv


def _bytea_converter(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or isinstance(v, bytes):
            return v
        if not isinstance(v, str):
            raise _bad(label, v)
        if v.startswith("\\x"):
            try:
                return bytes.fromhex(v[2:])
            except ValueError:
                raise _bad(label, v) from None
        try:
            return base64.b64decode(v, validate=True)  # what dbcli's JSON output writes for bytes
        except (binascii.Error, ValueError):
            raise _bad(label, v) from None
    return conv


_PARSERS: dict[str, Callable[[str], Any]] = {
    "date": dt.date.fromisoformat, "timestamp": dt.datetime.fromisoformat,
    "timestamptz": dt.datetime.fromisoformat, "time": dt.time.fromisoformat, "timetz": dt.time.fromisoformat,
}


def _datetime_converter(label: str, base: str) -> Converter:
    parse = _PARSERS[base]

    def conv(v: Any) -> Any:
        if v is None or isinstance(v, dt.date | dt.time):
            return v
        if not isinstance(v, str) or not v.strip():
            raise _bad(label, v)
        text = v.strip()
        try:
            parse(text)
        except ValueError:
            # PostgreSQL reads more than ISO (named months, 'epoch', BC years): text Python
            # cannot read goes to the server, whose error is mapped back to the row, unless it
            # has the ISO layout with an impossible date (2024-13-45)
            if _iso_shaped_invalid(text):
                raise _bad(label, v) from None
        # the text itself is bound: the server applies its own time zone rules to it
        return text
    return conv


def _iso_shaped_invalid(text: str) -> bool:
    """True for text like 2024-13-45: ISO layout with an impossible month or day."""
    head = text[:10]
    if len(head) == 10 and head[4] == "-" and head[7] == "-" and head.replace("-", "").isdigit():
        try:
            dt.date.fromisoformat(head)
        except ValueError:
            return True
    return False


def _array_converter(label: str, col: Column) -> Converter:
    elem_col = Column(name=col.name, data_type=label.removesuffix("[]"), base_type=col.element_type or "text",
                      category="", typmod=col.typmod, element_type=None, not_null=False, identity="",
                      generated="", default=None, pk_position=None)
    element = converter_for(elem_col)

    def walk(v: Any) -> Any:
        return [walk(x) for x in v] if isinstance(v, list) else element(v)

    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, list):
            try:
                return walk(v)
            except ValueError as e:
                raise ValueError(f"{e} (in array {label})") from None
        if isinstance(v, str) and v.strip().startswith("["):
            try:
                v = json.loads(v)  # JSON array text (what dbcli's own CSV output writes)
            except ValueError:
                raise _bad(label, v) from None
            return conv(v)
        if isinstance(v, str) and v.strip().startswith("{"):
            return v  # an array literal: the server parses it
        raise _bad(label, v)
    return conv


def _text_passthrough(label: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, bool | int | float | Decimal):
            return str(v).lower() if isinstance(v, bool) else str(v)
        if isinstance(v, dict | list):
            return json.dumps(v, ensure_ascii=False)
        raise _bad(label, v)
    return conv


def typed_converter(col: Column) -> Converter:
    """Like :func:`converter_for`, for values parsed from JSON (strings are JSON strings)."""
    if col.base_type in ("json", "jsonb"):
        return _json_typed_converter(col.data_type)
    return converter_for(col)


class RowConverter:
    """Turns records into value lists for a fixed column list, naming row and column on errors.

    ``typed``: the records come from JSON (a string for a json column is a JSON string).
    ``csv``: the records come from CSV, where an empty cell means NULL, except in a NOT NULL
    text column, where it can only mean the empty string.
    """

    def __init__(self, table: Table, names: Sequence[str], *, typed: bool = False, csv: bool = False) -> None:
        self.table = table
        self.names = list(names)
        cols = table.check_columns(self.names)
        self.converters = [self._make(c, typed, csv) for c in cols]
        self.pairs = list(zip(self.names, self.converters, strict=True))
        self.required = [i for i, c in enumerate(cols) if c.not_null]

    @staticmethod
    def _make(col: Column, typed: bool, csv: bool) -> Converter:
        base = typed_converter(col) if typed else converter_for(col)
        if not csv or (col.is_string and col.not_null):
            return base
        return lambda v: None if v == "" else base(v)

    def __call__(self, record: dict[str, Any], where: str) -> list[Any]:
        try:
            values = [conv(record.get(name)) for name, conv in self.pairs]
        except ValueError:
            self._explain(record, where)
            raise  # _explain always raises
        for i in self.required:
            if values[i] is None:
                raise InvalidInputError(f"{where}, column {self.names[i]}: null value in a not-null column")
        return values

    def _explain(self, record: dict[str, Any], where: str) -> None:
        for name, conv in self.pairs:
            try:
                conv(record.get(name))
            except ValueError as e:
                raise InvalidInputError(f"{where}, column {name}: {e}") from None
