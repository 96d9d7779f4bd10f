"""What the database says a table is: columns with their types, keys, identity columns.

Every table or column name a user types is checked here before it reaches SQL, and every value
is converted to its column's type here, so a bad name or value fails with exit 5 and a message
naming it, before the server sees anything.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from dbcli.errors import InvalidInputError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

Converter = Callable[[Any], Any]

# ---- the catalog ------------------------------------------------------------------------------

# One round trip: resolve the name on the search path (or in the given schema) and read its
# columns, types (domains resolved to their base type) and primary-key positions.
_DESCRIBE = """
WITH rel AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(false))
               ELSE n.nspname = %(schema)s::text END
    ORDER BY array_position(current_schemas(false), n.nspname)
    LIMIT 1
)
SELECT rel.nspname, rel.relname, rel.relkind, a.attname,
       format_type(a.atttypid, a.atttypmod),
       coalesce(bt.typname, t.typname),
       coalesce(bt.typcategory, t.typcategory),
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       et.typname,
       a.attnotnull, a.attidentity, a.attgenerated, pg_get_expr(ad.adbin, ad.adrelid),
       array_position(pk.conkey, a.attnum)
FROM rel
JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, t.typelem)
                     AND coalesce(bt.typcategory, t.typcategory) = 'A'
LEFT JOIN pg_attrdef ad ON ad.adrelid = rel.oid AND ad.adnum = a.attnum
LEFT JOIN pg_constraint pk ON pk.conrelid = rel.oid AND pk.contype = 'p'
ORDER BY a.attnum
"""

_NAMES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(false))
           ELSE n.nspname = %(schema)s::text END
"""

_LIST = """
SELECT n.nspname AS schema, c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END AS kind,
       CASE WHEN c.relkind IN ('r', 'p', 'm') AND c.reltuples >= 0 THEN c.reltuples::bigint END AS rows_estimate,
       CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_total_relation_size(c.oid) END AS size_bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(false))
           ELSE n.nspname = %(schema)s::text END
ORDER BY 1, 2
"""

_UNIQUE = """
SELECT i.relname AS name, con.conname IS NOT NULL AS is_constraint, ix.indisprimary,
       ix.indpred IS NOT NULL AS partial, 0 = ANY (ix.indkey::int2[]) AS has_expression,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid AND con.contype IN ('p', 'u')
WHERE ix.indrelid = %(oid)s::regclass AND ix.indisunique
ORDER BY ix.indisprimary DESC, i.relname
"""

STRING_TYPES = {"text", "varchar", "bpchar", "char", "name", "citext"}
RELKINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # as PostgreSQL prints it: numeric(12,2), character varying(40), integer[]
    base_type: str  # pg_type.typname after resolving domains: numeric, varchar, _int4
    category: str  # pg_type.typcategory: N numeric, S string, B boolean, D date/time, A array...
    typmod: int
    element_type: str | None
    not_null: bool
    identity: str  # '' no, 'a' GENERATED ALWAYS, 'd' BY DEFAULT
    generated: str  # '' or 's' (stored generated column: never written)
    default: str | None  # the default (or generation) expression as PostgreSQL prints it
    pk_position: int | None

    @property
    def is_string(self) -> bool:
        return self.base_type in STRING_TYPES

    @property
    def writable(self) -> bool:
        return not self.generated


@dataclass(frozen=True)
class UniqueKey:
    name: str
    columns: tuple[str, ...]
    is_constraint: bool
    primary: bool
    partial: bool
    has_expression: bool


@dataclass
class Table:
    schema: str
    name: str
    relkind: str
    columns: dict[str, Column]
    _converters: dict[str, Converter] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return RELKINDS.get(self.relkind, self.relkind)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def display(self) -> str:
        """The name users know it by: bare on ``public``, qualified elsewhere."""
        return self.name if self.schema == "public" else self.qualified

    def ident(self) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(self.schema, self.name)

    @property
    def primary_key(self) -> list[str]:
        keyed = [c for c in self.columns.values() if c.pk_position is not None]
        return [c.name for c in sorted(keyed, key=lambda c: c.pk_position or 0)]

    @property
    def identity_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.identity]

    def column(self, name: str, *, what: str = "column") -> Column:
        """The column called ``name``; exit 5 naming it and the closest match if there is none."""
        col = self.columns.get(name)
        if col is None:
            raise InvalidInputError(unknown_message(what, name, self.columns, of=self.display))
        return col

    def check_columns(self, names: Iterable[str]) -> list[Column]:
        return [self.column(n) for n in names]

    def converter(self, name: str) -> Converter:
        conv = self._converters.get(name)
        if conv is None:
            conv = self._converters[name] = converter_for(self.column(name))
        return conv

    def convert(self, name: str, value: Any) -> Any:
        """``value`` as the Python value to bind for column ``name`` (ValueError with the reason)."""
        return self.converter(name)(value)


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``."""
    schema, dot, rel = name.partition(".")
    return (schema, rel) if dot and schema and rel else (None, name)


def describe(conn: psycopg.Connection[Any], name: str) -> Table:
    """The table, view or materialized view called ``name`` (exit 5 naming the closest match)."""
    schema, rel = split_name(name)
    rows = conn.execute(_DESCRIBE, {"name": rel, "schema": schema}).fetchall()
    if not rows:
        candidates = [r[1] if r[0] == "public" or schema is None else f"{r[0]}.{r[1]}"
                      for r in conn.execute(_NAMES, {"schema": schema}).fetchall()]
        raise InvalidInputError(unknown_message("table", name, candidates))
    columns: dict[str, Column] = {}
    for (_, _, _, col, data_type, base, cat, typmod, elem, not_null, ident, gen, default, pk) in rows:
        columns[col] = Column(name=col, data_type=data_type, base_type=base, category=cat, typmod=typmod,
                              element_type=elem, not_null=not_null, identity=ident or "",
                              generated=gen or "", default=default, pk_position=pk)
    return Table(schema=rows[0][0], name=rows[0][1], relkind=rows[0][2], columns=columns)


def list_tables(conn: psycopg.Connection[Any], schema: str | None = None) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST, {"schema": schema}).fetchall()


def unique_keys(conn: psycopg.Connection[Any], table: Table) -> list[UniqueKey]:
    rows = conn.execute(_UNIQUE, {"oid": table.ident().as_string(conn)}).fetchall()
    return [UniqueKey(name=r[0], is_constraint=r[1], primary=r[2], partial=r[3], has_expression=r[4],
                      columns=tuple(r[5])) for r in rows]


# ---- names ------------------------------------------------------------------------------------

def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar choice, or None when nothing is even loosely alike."""
    import difflib

    best, best_score = None, 0.0
    low = word.lower()
    for choice in choices:
        score = difflib.SequenceMatcher(None, low, choice.lower()).ratio()
        if choice.lower() in low or low in choice.lower():
            score = max(score, 0.5)  # 'users; drop table users' still points at users
        if score > best_score:
            best, best_score = choice, score
    return best if best_score >= 0.4 else None


def unknown_message(what: str, name: str, choices: Iterable[str], *, of: str | None = None) -> str:
    match = closest(name, choices)
    text = f"unknown {what} {name!r}" + (f" of {of}" if of else "")
    return f"{text} (closest match: {match})" if match else text


# ---- values -----------------------------------------------------------------------------------

_INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1),
               "oid": (0, 2**32 - 1)}
_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


def _show(value: Any) -> str:
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
        return _numeric_converter(label, col.typmod)
    if base in ("float4", "float8"):
        return _float_converter(label)
    if base == "bool":
        return _bool_converter(label)
    if base in STRING_TYPES:
        limit = col.typmod - 4 if base in ("varchar", "bpchar") and col.typmod > 4 else None
        return _string_converter(label, limit)
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
    return ValueError(f"{why} for {label}: {_show(value)}")


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


def _numeric_converter(label: str, typmod: int) -> Converter:
    # numeric(p,s): typmod = ((p << 16) | s) + 4; -1 when unconstrained
    precision = scale = None
    if typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF

    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or (isinstance(v, str) and ("_" in v or not v.isascii())):
            raise _bad(label, v)
        try:
            d = Decimal(v.strip() if isinstance(v, str) else repr(v) if isinstance(v, float) else v)
        except (InvalidOperation, TypeError, ValueError):
            raise _bad(label, v) from None
        if precision is not None and scale is not None and not d.is_nan() \
                and (not d.is_finite() or _overflows(d, precision, scale)):
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
            if low in _TRUE:
                return True
            if low in _FALSE:
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
        from dbcli.output import to_json

        return to_json(v)
    return conv


def _json_typed_converter(label: str) -> Converter:
    # values from JSON input are already parsed: a string is a JSON string, not JSON text
    def conv(v: Any) -> Any:
        if v is None:
            return None
        from dbcli.output import to_json

        return to_json(v)
    return conv


def _uuid_converter(label: str) -> Converter:
    import uuid

    def conv(v: Any) -> Any:
        if v is None or isinstance(v, uuid.UUID):
            return v
        try:
            return uuid.UUID(str(v).strip())
        except ValueError:
            raise _bad(label, v) from None
    return conv


def _bytea_converter(label: str) -> Converter:
    import base64
    import binascii

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


# ---- whole-column checks for CSV text (the bulk import's fast path) --------------------------

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
_BOOL_TEXT = frozenset(v for word in _TRUE | _FALSE for v in (word, word.upper(), word.capitalize()))


def _numeric_cell(col: Column) -> tuple[str, int] | None:
    """(regular expression of a valid cell, digits a plain cell may have) for a number column."""
    base = col.base_type
    if base in ("int2", "int4", "int8"):
        plain = {"int2": 4, "int4": 9, "int8": 18}[base]  # fewer digits than the type's limit
        return _SIGNED_INT.format(plain), plain
    if base == "numeric":
        whole = "+"
        plain = 1000
        if col.typmod >= 4:
            precision, scale = ((col.typmod - 4) >> 16) & 0xFFFF, (col.typmod - 4) & 0xFFFF
            if precision <= scale:  # only a fraction: 0.5, .5, 0 (at least one digit)
                return r"[ \t]*[+-]?(?:0(?:\.\d*)?|\.\d+)[ \t]*", 0
            whole = f"{{1,{precision - scale}}}"
            plain = precision - scale
        return rf"[ \t]*[+-]?(?:\d{whole}(?:\.\d*)?|\.\d+)[ \t]*", plain
    if base in ("float4", "float8"):
        return _FLOAT, 0
    return None


def _text_limit(col: Column) -> int | None:
    return col.typmod - 4 if col.base_type in ("varchar", "bpchar") and col.typmod > 4 else None


# a CSV field on one line, as csv.reader and COPY both read it: quoted with its quotes doubled, or
# unquoted (written as an unrolled loop: a branch per character is three times slower in re)
_CSV_FIELD = r'(?:"[^"\r\n]*(?:""[^"\r\n]*)*"|[^,"\r\n]*)'


def csv_field_regex(col: Column) -> str | None:
    """A regular expression for a column's field as written in a CSV file (one line, before any
    unquoting) that matches only cells :func:`csv_column_check` accepts and COPY reads the same
    way; None for the types checked cell by cell.

    It lets a whole batch of records be checked in one match over its text, without splitting it
    into cells: numbers and booleans must be unquoted there (a quoted one is left to the full
    check, which reads "" as the empty string and an unquoted empty cell as NULL, as COPY does).
    """
    empty_ok = not col.not_null or col.is_string
    number = _numeric_cell(col)
    if number is not None:
        cell = number[0]
    elif col.base_type == "bool":
        single = "".join(sorted(v for v in _BOOL_TEXT if len(v) == 1))
        cell = "|".join([f"[{single}]", *sorted((v for v in _BOOL_TEXT if len(v) > 1), key=str.lower)])
    elif col.is_string:
        limit = _text_limit(col)
        if limit is None:
            return _CSV_FIELD
        return rf'(?:[^,"\r\n]{{0,{limit}}}|"[^"\r\n]{{0,{limit}}}")'
    else:
        return None
    return f"(?:{cell})?" if empty_ok else f"(?:{cell})"


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
        limit = _text_limit(col)
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
