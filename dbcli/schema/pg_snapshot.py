"""A PostgreSQL database's schema as comparable items, read from the system catalogs.

Tables, columns (type, collation, nullability, default, identity and its sequence, generation),
constraints, indexes, views, functions and procedures, triggers, sequences, types (enum, domain,
composite, range) of every user schema, and the extensions installed. Each item carries the
definition PostgreSQL itself prints (``pg_get_constraintdef``, ``pg_get_indexdef``...), so two
databases on the same server, read with the same ``search_path`` and the same session settings
(:data:`SESSION`), compare text for text.
Left out: system schemas, objects that belong to an extension, indexes that back a constraint (the
constraint says it), identity sequences (the column says it), extension versions, and dbcli's
migration bookkeeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from dbcli.schema.migrations import TABLE as BOOKKEEPING

# the schemas and objects compared: user schemas, without extension members and the bookkeeping table
_USER_SCHEMA = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"""
_NOT_EXTENSION = """NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass
                    AND d.objid = {oid} AND d.deptype = 'e')"""
_RELATION_FILTER = f"""{_USER_SCHEMA} AND c.relname <> %(bookkeeping)s
  AND {_NOT_EXTENSION.format(catalog="pg_class", oid="c.oid")}"""

_SEQUENCE_OPTIONS = """format('%%s start %%s increment %%s minvalue %%s maxvalue %%s cache %%s%%s',
    s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
    CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)"""

_RELATIONS = f"""
SELECT n.nspname, c.relname, c.relkind,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       CASE WHEN c.relkind = 'S' THEN {_SEQUENCE_OPTIONS} END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {_RELATION_FILTER}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'i' AND c.relkind = 'S')
"""

_COLUMNS = f"""
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END,
       CASE WHEN s.seqrelid IS NOT NULL THEN {_SEQUENCE_OPTIONS} END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_depend dep ON a.attidentity <> '' AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid = c.oid
     AND dep.refobjsubid = a.attnum AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'i'
LEFT JOIN pg_sequence s ON s.seqrelid = dep.objid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f') AND {_RELATION_FILTER}
"""

_CONSTRAINTS = f"""
SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid, true)
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype <> 'n' AND {_RELATION_FILTER}
"""

_INDEXES = f"""
SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid AND con.contype IN ('p', 'u', 'x'))
  AND {_RELATION_FILTER}
"""

_TRIGGERS = f"""
SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid, true)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {_RELATION_FILTER}
"""

_FUNCTIONS = f"""
SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prokind,
       pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'p', 'w') AND {_USER_SCHEMA}
  AND {_NOT_EXTENSION.format(catalog="pg_proc", oid="p.oid")}
"""

# enum, domain, composite (CREATE TYPE ... AS), range; not the row types of tables, arrays, multiranges
_TYPES = f"""
SELECT n.nspname, t.typname, t.typtype,
       CASE t.typtype
         WHEN 'e' THEN (SELECT '(' || string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) || ')'
                        FROM pg_enum e WHERE e.enumtypid = t.oid)
         WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                       || CASE WHEN t.typcollation <> b.typcollation
                               THEN ' collate ' || t.typcollation::regcollation::text ELSE '' END
                       || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                       || coalesce(' default ' || t.typdefault, '')
                       || coalesce((SELECT ' ' || string_agg(pg_get_constraintdef(con.oid, true), ' '
                                                             ORDER BY con.conname)
                                    FROM pg_constraint con WHERE con.contypid = t.oid AND con.contype = 'c'), '')
         WHEN 'c' THEN (SELECT '(' || string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod),
                                                ', ' ORDER BY a.attnum) || ')'
                        FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
         WHEN 'r' THEN (SELECT 'subtype ' || format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
       END
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type b ON b.oid = t.typbasetype
LEFT JOIN pg_class tc ON tc.oid = t.typrelid
WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND tc.relkind = 'c')) AND {_USER_SCHEMA}
  AND {_NOT_EXTENSION.format(catalog="pg_type", oid="t.oid")}
"""

_EXTENSIONS = "SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"

# what the catalogs print differently by session: a timestamptz default, say, in the session's time zone
SESSION = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "1"}

_RELKINDS = {"r": "table", "p": "table", "f": "foreign table", "v": "view", "m": "materialized view",
             "S": "sequence"}
_PROKINDS = {"f": "function", "p": "procedure", "w": "function"}
_TYPEKINDS = {"e": "enum", "d": "domain", "c": "composite type", "r": "range type"}
_IDENTITY = {"a": "generated always as identity", "d": "generated by default as identity"}
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Item:
    """One schema object. ``attrs`` are compared one by one; ``parent`` is the relation it belongs to."""

    family: str  # relation, column, constraint, index, trigger, function, type, extension: name spaces
    name: str  # as a user writes it: users, users.email, sales.orders, add_tax(numeric)
    kind: str  # table, view, sequence, column, constraint, index, function, trigger...
    attrs: tuple[tuple[str, str | None], ...]
    parent: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.family, self.name

    @property
    def summary(self) -> str:
        """The item in one line, for a row that says it is missing or unexpected."""
        if self.family == "column":
            return " ".join(f"{label} {v}" if label in ("collation", "default", "generated") else v
                            for label, v in self.attrs if v and v != "null")
        return next((v for _, v in self.attrs if v), self.kind)


Snapshot = dict[tuple[str, str], Item]


def snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """Every compared object of the database ``conn`` is connected to."""
    items: list[Item] = []
    for setting, value in SESSION.items():
        conn.execute("SELECT set_config(%s, %s, false)", (setting, value))

    def rows(query: str) -> list[tuple[Any, ...]]:
        return conn.execute(query, {"bookkeeping": BOOKKEEPING}).fetchall()

    for schema, rel, relkind, viewdef, partkey, bound, seqdef in rows(_RELATIONS):
        kind = _RELKINDS[relkind]
        attrs: list[tuple[str, str | None]] = [("definition", _flat(viewdef or seqdef))] if viewdef or seqdef \
            else [("", kind)]
        if relkind == "p" or bound:
            attrs += [("partitioning", partkey), ("partition bound", bound)]
        items.append(Item("relation", qualified(schema, rel), kind, tuple(attrs)))
    for schema, rel, col, type_, not_null, default, identity, generated, collation, identity_seq in rows(_COLUMNS):
        table = qualified(schema, rel)
        items.append(Item("column", f"{table}.{col}", "column", (
            ("type", type_), ("collation", collation), ("nullability", "not null" if not_null else "null"),
            ("default", None if generated else default), ("identity", _IDENTITY.get(identity)),
            ("identity sequence", identity_seq),
            ("generated", f"always as ({default}) stored" if generated else None)), parent=table))
    for family, query in (("constraint", _CONSTRAINTS), ("index", _INDEXES), ("trigger", _TRIGGERS)):
        for schema, rel, name, definition in rows(query):
            table = qualified(schema, rel)
            items.append(Item(family, f"{table}.{name}", family, (("definition", _flat(definition)),),
                              parent=table))
    for schema, signature, prokind, definition in rows(_FUNCTIONS):
        items.append(Item("function", qualified(schema, signature), _PROKINDS[prokind],
                          (("definition", _flat(definition)),)))
    for schema, name, typtype, definition in rows(_TYPES):
        items.append(Item("type", qualified(schema, name), _TYPEKINDS[typtype], (("definition", definition),)))
    for name, schema in rows(_EXTENSIONS):
        items.append(Item("extension", name, "extension", (("", f"in schema {schema}"),)))
    return {item.key: item for item in items}


def qualified(schema: str, name: str) -> str:
    """``name`` in the public schema, ``schema.name`` elsewhere."""
    return name if schema == "public" else f"{schema}.{name}"


def _flat(text: str | None) -> str | None:
    """A definition on one line: PostgreSQL's pretty-printing spreads views and functions over many."""
    return _SPACE.sub(" ", text).strip() if text is not None else None
