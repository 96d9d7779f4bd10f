"""What every import does around its COPY: the target (the table, or a staging table for an
upsert), the merge of an upsert, the identity sequences, and the server's errors placed back on
the source line through the COPY row number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from dbcli.errors import DbcliError, InvalidInputError
from dbcli.postgres.catalog import Column, Table, unique_keys, unknown_message
from dbcli.postgres.csv_rejects import Rejected
from dbcli.postgres.errors import translate
from dbcli.postgres.tables import TableGateway, bump_sequences


class LineNumbers(Protocol):
    """COPY's line number (0-based) -> the source line it came from (IndexError: no such line);
    ``len()`` is the number of rows sent. COPY counts one line a row, except in CSV with line
    breaks inside quotes (:class:`dbcli.postgres.csv_batches.LineMap`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> int: ...


_COPY_CONTEXT = re.compile(r"COPY [^\n]*?, line (?P<line>\d+)(?:, column (?P<column>[^:]+))?")


@dataclass
class ImportResult:
    table: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: Rejected | None = None  # with --skip-bad: the lines set aside

    def as_row(self) -> dict[str, Any]:
        row = {"table": self.table, "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
               "unchanged": self.unchanged}
        if self.rejected is not None:
            row["rejected"] = len(self.rejected)
        return row


class Load:
    """What every import does around its COPY: target (the table or a staging table), merge, sequences."""

    def __init__(self, gw: TableGateway, names: list[str], upsert: bool, conflict_key: str | None,
                 lines: LineNumbers) -> None:
        """``lines``: filled by the caller as it sends rows, to place the server's errors on their source line."""
        gw.check_writable(names)
        self.gw, self.names = gw, names
        self.key = _conflict_target(gw, names, conflict_key) if upsert else None
        self.cur = gw.conn.cursor()
        self.target: sql.Composable = gw.table.ident()
        if self.key is not None:
            self.target = sql.Identifier("dbcli_import_stage")
            self.cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target))
            self.cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                self.target, idents(names), gw.table.ident()))
        self.lines = lines

    def copy_statement(self, options: sql.Composable | None = None) -> sql.Composed:
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(self.target, idents(self.names))
        return statement + sql.SQL(" ({})").format(options) if options is not None else statement

    def finish(self) -> ImportResult:
        gw, table = self.gw, self.gw.table
        # COPY's own count: a CSV batch sent as it is counts lines, not telling records apart
        rows = self.cur.rowcount if self.cur.rowcount >= 0 else len(self.lines)
        result = ImportResult(table=table.display, rows=rows)
        if self.key is None:
            result.inserted = result.rows
        else:
            result.inserted, result.updated = _merge(gw, self.cur, self.target, self.names, self.key)
            result.unchanged = result.rows - result.inserted - result.updated
        identity = [n for n in self.names if table.columns[n].identity]
        if identity:
            bump_sequences(gw.conn, table, identity)
        gw.wrote = gw.wrote or result.inserted + result.updated > 0
        return result


def placed_error(err: DbcliError, e: Exception, lines: LineNumbers, label: str, table: Table) -> DbcliError:
    """The server's error with COPY's line number turned back into the source line."""
    diag = getattr(e, "diag", None)
    m = _COPY_CONTEXT.search(getattr(diag, "context", None) or "")
    line = source_line(lines, int(m["line"])) if m else None
    if m is None or line is None:
        return err
    where = f"{label} {line}"
    column = (m["column"] or "").strip() or getattr(diag, "column_name", None)
    if column and column in table.columns:
        where += f", column {column}"
    message = getattr(diag, "message_primary", None) or err.message
    return type(err)(f"{where}: {message}", hint=err.hint, sqlstate=err.sqlstate)


def source_line(lines: LineNumbers, copy_line: int) -> int | None:
    """The source line of COPY's line ``copy_line`` (1-based, as COPY names it), if it sent one."""
    if copy_line < 1:
        return None
    try:
        return lines[copy_line - 1]
    except IndexError:
        return None


@dataclass(frozen=True)
class _Key:
    columns: tuple[str, ...]
    constraint: str | None  # ON CONFLICT ON CONSTRAINT name, else ON CONFLICT (columns)


def _conflict_target(gw: TableGateway, names: list[str], conflict_key: str | None) -> _Key:
    table = gw.table
    if conflict_key is None:
        if not table.primary_key:
            raise InvalidInputError(f"{table.display} has no primary key: give --conflict-key")
        key = _Key(tuple(table.primary_key), None)
    else:
        keys = unique_keys(gw.conn, table)
        by_name = {k.name: k for k in keys}
        wanted = tuple(c.strip() for c in conflict_key.split(","))
        found = by_name.get(conflict_key) or next((k for k in keys if set(k.columns) == set(wanted)
                                                   and not k.partial and not k.has_expression), None)
        if found is None:
            raise InvalidInputError(unknown_message("unique key", conflict_key, by_name, of=table.display))
        if found.partial or found.has_expression:
            raise InvalidInputError(f"unique index {found.name} is partial or on an expression: "
                                    "ON CONFLICT cannot target it by name (use a unique constraint)")
        key = _Key(found.columns, found.name if found.is_constraint else None)
    missing = [c for c in key.columns if c not in names]
    if missing:
        raise InvalidInputError(f"--upsert needs the key column(s) {', '.join(missing)} in the input")
    return key


def _merge(gw: TableGateway, cur: psycopg.Cursor[Any], stage: sql.Composable, names: list[str],
           key: _Key) -> tuple[int, int]:
    """INSERT ... SELECT from the staging table ON CONFLICT DO UPDATE; returns (inserted, updated)."""
    table = gw.table
    override = any(table.columns[n].identity == "a" for n in names)
    settable = [n for n in names if n not in key.columns and table.columns[n].identity != "a"]
    target = (sql.SQL("ON CONSTRAINT {}").format(sql.Identifier(key.constraint)) if key.constraint
              else sql.SQL("({})").format(idents(key.columns)))
    # a row whose values are all the same is left alone (no new row version) and counted unchanged
    action = (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in settable)
        + sql.SQL(" WHERE ") + sql.SQL(" OR ").join(_differs(table.columns[n]) for n in settable)
        if settable else sql.SQL("DO NOTHING"))
    query = sql.SQL(
        "WITH merged AS (INSERT INTO {table} AS t ({cols}) {override}SELECT {cols} FROM {stage} ON CONFLICT {target} "
        "{action} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged").format(
            table=table.ident(), cols=idents(names), stage=stage, target=target, action=action,
            override=sql.SQL("OVERRIDING SYSTEM VALUE " if override else ""))
    try:
        row = cur.execute(query).fetchone()
    except psycopg.errors.CardinalityViolation as e:
        raise InvalidInputError("the input has two rows with the same key: an upsert can change a row only "
                                "once", sqlstate=e.sqlstate) from e
    except psycopg.Error as e:
        raise translate(e) from e
    inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    return inserted, updated


# types without an equality operator (xml, the geometric types), or whose "=" is not sameness (box
# and circle compare areas): their values are compared as text. json (kept as typed, spaces and
# all) is compared as jsonb, so the same value written differently is unchanged.
_AS_TEXT = frozenset({"xml", "point", "lseg", "line", "box", "path", "polygon", "circle"})


def _differs(column: Column) -> sql.Composable:
    """``t.c IS DISTINCT FROM EXCLUDED.c``, through a cast where the type has no equality to compare with."""
    kind = column.element_type or column.base_type
    cast = "jsonb" if kind == "json" else "text" if kind in _AS_TEXT else None
    if cast is not None:
        if column.element_type:
            cast += "[]"
        return sql.SQL("t.{0}::{1} IS DISTINCT FROM EXCLUDED.{0}::{1}").format(sql.Identifier(column.name),
                                                                              sql.SQL(cast))
    return sql.SQL("t.{0} IS DISTINCT FROM EXCLUDED.{0}").format(sql.Identifier(column.name))


def idents(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))
