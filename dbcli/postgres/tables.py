"""A generic gateway for any table in the catalog: get, find, insert, update, delete.

Names are checked against the catalog (:mod:`dbcli.postgres.catalog`) and quoted with ``sql.Identifier``;
values are converted to their column's type and always bound as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.rows import dict_row

from dbcli.config.redact import redact_text
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConflictError, InvalidInputError, UsageError
from dbcli.postgres.catalog import Table
from dbcli.postgres.converters import Converter, RowConverter, converter_for
from dbcli.postgres.errors import translate

# ---- filters ----------------------------------------------------------------------------------

OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
_NULL_TEST = re.compile(r"^\s*(?P<col>.+?)\s+is\s+(?P<not>not\s+)?null\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Filter:
    column: str
    op: str  # one of OPERATORS, "is null" or "is not null"
    value: Any = None  # text from the command line, or a typed value from library callers


def parse_where(text: str) -> Filter:
    """``COL=V``, ``COL!=V``, ``COL<V``, ``<=``, ``>``, ``>=``, ``COL~PATTERN``, ``COL is [not] null``."""
    m = _NULL_TEST.match(text)
    if m:
        return Filter(m["col"].strip(), "is not null" if m["not"] else "is null")
    positions = [i for i, ch in enumerate(text) if ch in "=!<>~"]
    if not positions:
        raise UsageError(f"--where {text!r}: expected COL=VALUE (or !=, <, <=, >, >=, ~, is null, is not null)")
    i = positions[0]
    op = text[i:i + 2] if text[i:i + 2] in OPERATORS else text[i]
    if op not in OPERATORS:  # a lone '!'
        raise UsageError(f"--where {text!r}: unknown operator {op!r}")
    column = text[:i].strip()
    if not column:
        raise UsageError(f"--where {text!r}: no column name before {op!r}")
    return Filter(column, op, text[i + len(op):].strip())


def parse_assignment(text: str) -> tuple[str, str]:
    """``COL=VALUE`` of ``--set``."""
    column, eq, value = text.partition("=")
    if not eq or not column.strip():
        raise UsageError(f"--set {text!r}: expected COL=VALUE")
    return column.strip(), value


def parse_order(text: str) -> tuple[str, bool]:
    """``COL`` or ``COL:desc`` / ``COL:asc``; returns (column, descending)."""
    column, colon, direction = text.rpartition(":")
    if not colon:
        return text.strip(), False
    if direction.strip().lower() not in ("asc", "desc"):
        return text.strip(), False  # a column name that contains ':'
    return column.strip(), direction.strip().lower() == "desc"


def _sql_op(op: str) -> sql.SQL:
    return sql.SQL({"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[op])


# ---- the gateway ------------------------------------------------------------------------------

class TableGateway:
    """Rows of one table as dicts. Works inside the caller's transaction (see :class:`UnitOfWork`)."""

    def __init__(self, conn: psycopg.Connection[Any], table: Table, *, encryptor: Encryptor | None = None) -> None:
        self.conn = conn
        self.table = table
        self.enc = encryptor if encryptor is not None and encryptor.columns_for(table.display) else None
        self.encrypted: set[str] = self.enc.columns_for(table.display) if self.enc else set()
        self.wrote = False
        self._converters: dict[str, Converter] = {}

    def convert(self, name: str, value: Any) -> Any:
        """``value`` as the Python value to bind for column ``name`` (ValueError with the reason)."""
        conv = self._converters.get(name)
        if conv is None:
            conv = self._converters[name] = converter_for(self.table.column(name))
        return conv(value)

    # -- reading
    def _decrypt(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.enc.decrypt_row(self.table.display, row) if self.enc else row

    def _not_encrypted(self, column: str, use: str) -> None:
        if column in self.encrypted:
            raise InvalidInputError(f"column {column} of {self.table.display} is encrypted: it cannot be {use}")

    def key_filters(self, key: str | Sequence[Any]) -> list[Filter]:
        """Filters for a primary-key value; a composite key is ``5,7`` (in key column order)."""
        pk = self.table.primary_key
        if not pk:
            raise InvalidInputError(f"{self.table.display} has no primary key (use find --where)")
        parts: list[Any] = [key] if isinstance(key, str) and len(pk) == 1 else \
            key.split(",") if isinstance(key, str) else list(key)
        if len(parts) != len(pk):
            raise InvalidInputError(f"{self.table.display} has a {len(pk)}-column primary key ({', '.join(pk)}): "
                                    f"give {len(pk)} comma-separated values")
        filters = []
        for col, part in zip(pk, parts, strict=True):
            value = part.strip() if isinstance(part, str) else part
            if isinstance(value, str):
                try:
                    self.convert(col, value)
                except ValueError as e:
                    raise InvalidInputError(f"primary key {col}: {e}") from None
            filters.append(Filter(col, "=", value))
        return filters

    def get(self, key: str | Sequence[Any]) -> dict[str, Any] | None:
        rows = list(self.find(self.key_filters(key), limit=2)[1])
        return rows[0] if rows else None

    def where_sql(self, filters: Sequence[Filter]) -> tuple[sql.Composed, list[Any]]:
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for f in filters:
            col = self.table.column(f.column)
            self._not_encrypted(col.name, "filtered on")
            ident = sql.Identifier(col.name)
            if f.op == "is null":
                parts.append(sql.SQL("{} IS NULL").format(ident))
            elif f.op == "is not null":
                parts.append(sql.SQL("{} IS NOT NULL").format(ident))
            elif f.op == "~":
                parts.append(sql.SQL("{}::text ILIKE %s").format(ident))
                params.append(f.value)
            else:
                try:
                    value = self.convert(col.name, f.value)
                except ValueError as e:
                    raise InvalidInputError(f"--where {col.name}: {e}") from None
                parts.append(sql.SQL("{} {} %s").format(ident, _sql_op(f.op)))
                params.append(value)
        if not parts:
            return sql.Composed([]), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params

    def select_sql(self, filters: Sequence[Filter] = (), *, order_by: Sequence[str] = (),
                   limit: int | None = None, columns: Sequence[str] | None = None,
                   ) -> tuple[list[str], sql.Composed, list[Any]]:
        """The SELECT for ``find`` (also what ``export`` wraps in COPY)."""
        names = [self.table.column(c).name for c in columns] if columns else list(self.table.columns)
        where, params = self.where_sql(filters)
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, names)),
                                                    self.table.ident()) + where
        if order_by:
            keys = []
            for spec in order_by:
                name, desc = parse_order(spec)
                col = self.table.column(name)
                self._not_encrypted(col.name, "sorted on")
                keys.append(sql.SQL("{} DESC" if desc else "{}").format(sql.Identifier(col.name)))
            query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(keys)
        if limit is not None:
            if limit < 0:
                raise UsageError("--limit must be 0 or more")
            query += sql.SQL(" LIMIT %s")
            params.append(limit)
        return names, query, params

    def find(self, filters: Sequence[Filter] = (), *, order_by: Sequence[str] = (), limit: int | None = None,
             columns: Sequence[str] | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """The column names and a stream of matching rows (memory stays flat for any result size)."""
        names, query, params = self.select_sql(filters, order_by=order_by, limit=limit, columns=columns)
        size = 1000 if pq.version() >= 170000 else 1  # chunked rows need libpq 17

        def rows() -> Iterator[dict[str, Any]]:
            with self.conn.cursor(row_factory=dict_row) as cur:
                for row in cur.stream(query, params, size=size):
                    yield self._decrypt(row)
        return names, rows()

    def count(self, filters: Sequence[Filter] = ()) -> int:
        where, params = self.where_sql(filters)
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.table.ident()) + where,
                                params).fetchone()
        return int(row[0]) if row else 0

    # -- writing
    def check_writable(self, names: Iterable[str], *, updating: bool = False) -> None:
        for name in names:
            col = self.table.column(name)
            if col.generated:
                raise InvalidInputError(f"column {name} of {self.table.display} is generated: it cannot be written")
            if updating and col.identity == "a":
                raise InvalidInputError(f"column {name} of {self.table.display} is an identity column "
                                        "(generated always): it cannot be updated")

    def insert(self, records: Iterable[tuple[int, dict[str, Any]]], *, typed: bool = True,
               csv: bool = False) -> list[dict[str, Any]]:
        """Insert each record (missing columns take their defaults); returns the stored rows.

        All or nothing within the caller's transaction; an error names the record (``row 3``).
        """
        converters: dict[tuple[str, ...], RowConverter] = {}
        stored: list[dict[str, Any]] = []
        identity_written: set[str] = set()
        with self.conn.cursor(row_factory=dict_row) as cur:
            for n, (_, record) in enumerate(records, start=1):
                names = tuple(record)
                if names not in converters:
                    self.check_writable(names)
                    converters[names] = RowConverter(self.table, names, typed=typed, csv=csv)
                values = converters[names](record, f"row {n}")
                if self.enc:
                    row = self.enc.encrypt_row(self.table.display, dict(zip(names, values, strict=True)))
                    values = [row[name] for name in names]
                written = {c for c in names if self.table.columns[c].identity}
                identity_written |= written
                try:
                    cur.execute(self._insert_sql(names, any(self.table.columns[c].identity == "a" for c in written)),
                                values)
                except psycopg.Error as e:
                    err = translate(e)
                    raise type(err)(f"row {n}: {err.message}", hint=err.hint, sqlstate=err.sqlstate) from e
                row_out = cur.fetchone()
                if row_out is not None:
                    stored.append(self._decrypt(row_out))
        if stored:
            self.wrote = True
        if identity_written:
            bump_sequences(self.conn, self.table, sorted(identity_written))
        return stored

    def _insert_sql(self, names: Sequence[str], override: bool) -> sql.Composed:
        if not names:
            return sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING *").format(self.table.ident())
        return sql.SQL("INSERT INTO {} ({}) {}VALUES ({}) RETURNING *").format(
            self.table.ident(), sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL("OVERRIDING SYSTEM VALUE " if override else ""),
            sql.SQL(", ").join(sql.Placeholder() * len(names)))

    def _refuse_unfiltered(self, verb: str, filters: Sequence[Filter], all_rows: bool) -> None:
        if not filters and not all_rows:
            raise ConflictError(f"refusing to {verb} every row of {self.table.display} without --where "
                                "(add --all to mean it)")

    def update(self, filters: Sequence[Filter], changes: dict[str, Any], *, all_rows: bool = False,
               dry_run: bool = False) -> int:
        """Set ``changes`` (column -> text value, or None for NULL) on matching rows; returns the count."""
        self._refuse_unfiltered("update", filters, all_rows)
        if not changes:
            raise UsageError("nothing to set: give --set COL=VALUE")
        self.check_writable(changes, updating=True)
        values: dict[str, Any] = {}
        for name, raw in changes.items():
            try:
                values[name] = None if raw is None else self.convert(name, raw)
            except ValueError as e:
                raise InvalidInputError(f"--set {name}: {e}") from None
            if values[name] is None and self.table.columns[name].not_null:
                raise InvalidInputError(f"--set {name}: null value in a not-null column")
        if dry_run:
            return self.count(filters)
        if self.enc:
            values = self.enc.encrypt_row(self.table.display, values)
        where, params = self.where_sql(filters)
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in values)
        query = sql.SQL("UPDATE {} SET ").format(self.table.ident()) + assignments + where
        cur = self.conn.execute(query, [*values.values(), *params])
        self.wrote = self.wrote or cur.rowcount > 0
        return cur.rowcount

    def delete(self, filters: Sequence[Filter], *, all_rows: bool = False, dry_run: bool = False) -> int:
        self._refuse_unfiltered("delete", filters, all_rows)
        where, params = self.where_sql(filters)
        if dry_run:
            return self.count(filters)
        try:
            cur = self.conn.execute(sql.SQL("DELETE FROM {}").format(self.table.ident()) + where, params)
        except (psycopg.errors.ForeignKeyViolation, psycopg.errors.RestrictViolation) as e:
            raise ConflictError(
                f"cannot delete from {self.table.display}: rows are still referenced from table "
                f"{e.diag.table_name} (constraint {e.diag.constraint_name})",
                hint=redact_text(e.diag.message_detail or "") or None, sqlstate=e.sqlstate) from e
        self.wrote = self.wrote or cur.rowcount > 0
        return cur.rowcount


def bump_sequences(conn: psycopg.Connection[Any], table: Table, columns: Sequence[str]) -> None:
    """After explicit ids were written, move each column's sequence past the largest id.

    Never moves a sequence backwards, so ids already handed out are never reused.
    """
    for name in columns:
        conn.execute(sql.SQL(
            "SELECT setval(s.seq, m.top) FROM"
            " (SELECT pg_get_serial_sequence(format('%%I.%%I', %s::text, %s::text), %s)::regclass AS seq) s,"
            " (SELECT max({}) AS top FROM {}) m"
            " WHERE s.seq IS NOT NULL AND m.top IS NOT NULL"
            " AND m.top > coalesce(pg_sequence_last_value(s.seq), 0)").format(
                sql.Identifier(name), table.ident()), (table.schema, table.name, name))
