"""What the database says a table is: columns with their types, keys, identity columns.

Every table or column name a user types is checked here before it reaches SQL, so a bad name
fails with exit 5 and a message naming it and its closest match, before the server sees
anything. Values are converted to their column's type by :mod:`dbcli.postgres.converters`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbcli.errors import InvalidInputError

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

    @property
    def text_limit(self) -> int | None:
        """The length limit of a varchar(n) or char(n) column."""
        return self.typmod - 4 if self.base_type in ("varchar", "bpchar") and self.typmod > 4 else None

    @property
    def precision_scale(self) -> tuple[int, int] | None:
        """(precision, scale) of a numeric(p,s) column; None when unconstrained (or not numeric)."""
        if self.base_type != "numeric" or self.typmod < 4:
            return None
        # numeric(p,s): typmod = ((p << 16) | s) + 4; -1 when unconstrained
        return ((self.typmod - 4) >> 16) & 0xFFFF, (self.typmod - 4) & 0xFFFF


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


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``."""
    schema, dot, rel = name.partition(".")
    return (schema, rel) if dot and schema and rel else (None, name)


def describe(conn: psycopg.Connection[Any], name: str) -> Table:
    """The table, view or materialized view called ``name`` (exit 5 naming the closest match)."""
    schema, rel = split_name(name)
    rows = conn.execute(_DESCRIBE, {"name": rel, "schema": schema}).fetchall()
    if not rows:
        raise InvalidInputError(unknown_message("table", name, relation_names(conn, schema)))
    columns: dict[str, Column] = {}
    for (_, _, _, col, data_type, base, cat, typmod, elem, not_null, ident, gen, default, pk) in rows:
        columns[col] = Column(name=col, data_type=data_type, base_type=base, category=cat, typmod=typmod,
                              element_type=elem, not_null=not_null, identity=ident or "",
                              generated=gen or "", default=default, pk_position=pk)
    return Table(schema=rows[0][0], name=rows[0][1], relkind=rows[0][2], columns=columns)


def relation_names(conn: psycopg.Connection[Any], schema: str | None = None) -> list[str]:
    """The tables and views on the search path (or in ``schema``) as a user types them."""
    return [r[1] if r[0] == "public" or schema is None else f"{r[0]}.{r[1]}"
            for r in conn.execute(_NAMES, {"schema": schema}).fetchall()]


def list_tables(conn: psycopg.Connection[Any], schema: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST, {"schema": schema}).fetchall()


def unique_keys(conn: psycopg.Connection[Any], table: Table) -> list[UniqueKey]:
    rows = conn.execute(_UNIQUE, {"oid": table.ident().as_string(conn)}).fetchall()
    return [UniqueKey(name=r[0], is_constraint=r[1], primary=r[2], partial=r[3], has_expression=r[4],
                      columns=tuple(r[5])) for r in rows]


# ---- names ------------------------------------------------------------------------------------

def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar choice, or None when nothing is even loosely alike."""
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
