"""The row counts of a ``pg_restore -j`` restore (pg_restore_jobs), taken while pg_restore runs.

Counting reads every restored row: after pg_restore it adds that time to the restore; while it runs,
a table is counted beside the index builds as soon as pg_restore reports its data loaded (``finished
item N TABLE DATA name`` with ``--verbose``), and only the tables that could not be counted then
are left for after pg_restore, counted in ``sessions`` connections at once.

A table is counted early only when nothing can add rows to it any more. pg_restore creates every
table and attaches every partition (its pre-data section) before it loads any data, and it creates
triggers and rules after the data of their table. So after a table's data item, its rows change
only through another table's data item when the two are related by inheritance or partitioning
(a parent counts its children's rows; ``--load-via-partition-root`` loads a partition's rows through
its root): such a table is counted after pg_restore, as is one whose name pg_restore's message cannot
tell apart (the same name in two schemas).
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.postgres import connection as postgres

_FIND = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid"
_RELATED = "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = %s OR inhparent = %s)"


class RowCounter:
    """Counts ``tables`` (manifest entries) of the profile's database ``dbname``, as the manifest
    counted them: with ``own_rows``, each plain table's own rows; else each table with its children."""

    def __init__(self, cfg: Config, dbname: str | None, tables: list[dict[str, Any]], *, own_rows: bool,
                 sessions: int) -> None:
        self.cfg, self.dbname, self.own_rows = cfg, dbname, own_rows
        self.tables = [t for t in tables if t["kind"] == "r"] if own_rows else list(tables)
        names: dict[str, list[dict[str, Any]]] = {}
        for t in self.tables:
            names.setdefault(t["table"], []).append(t)
        self._by_name = {name: found[0] for name, found in names.items() if len(found) == 1}
        self._todo: list[tuple[dict[str, Any], bool]] = []  # (table, early)
        self._queued: set[tuple[str, str]] = set()
        self._later: list[dict[str, Any]] = []  # queued early, but related to another table
        self._counted: dict[tuple[str, str], int | None] = {}
        self._errors: list[BaseException] = []
        self._conns: list[psycopg.Connection[Any]] = []
        self._closing = self._stopped = False
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._work, daemon=True, name="dbcli-count")
                         for _ in range(max(1, min(sessions, len(self.tables))))]
        for thread in self._threads:
            thread.start()

    def loaded(self, name: str) -> None:
        """pg_restore has loaded the data of table ``name`` (its message names no schema)."""
        table = self._by_name.pop(name, None)
        if table is not None:
            with self._cond:
                self._queued.add((table["schema"], table["table"]))
                self._todo.append((table, True))
                self._cond.notify()

    def counts(self) -> list[dict[str, Any]]:
        """After pg_restore: count the tables not counted yet and wait; {schema, table, expected, actual}
        for every table, in the order the one-transaction restore lists them."""
        with self._cond:
            self._todo += [(t, False) for t in self._later]
            self._todo += [(t, False) for t in self.tables if (t["schema"], t["table"]) not in self._queued]
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        try:
            if self._errors:
                raise self._errors[0]
            rows = [{"schema": t["schema"], "table": t["table"], "expected": t["rows"],
                     "actual": self._counted[(t["schema"], t["table"])]} for t in self.tables]
            if not self._conns:
                return rows
            with postgres.errors_translated(self.cfg):
                # the database's collation orders the names, as the one-transaction restore's ORDER BY does
                order = self._conns[0].execute(
                    "SELECT i FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS x(s, t, i) ORDER BY s, t",
                    ([r["schema"] for r in rows], [r["table"] for r in rows])).fetchall()
            return [rows[i - 1] for (i,) in order]
        finally:
            for conn in self._conns:
                conn.close()

    def stop(self) -> None:
        """pg_restore failed: cancel the counts in flight, count no more."""
        with self._cond:
            self._stopped = True
            self._todo.clear()
            self._cond.notify_all()
            busy = list(self._conns)
        for conn in busy:
            with suppress(psycopg.Error):  # the error that stopped pg_restore is the one to report
                conn.cancel_safe(timeout=1)
        for thread in self._threads:
            thread.join(timeout=2)

    def _work(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            # connected now, while pg_restore starts: ready when it has loaded its first table
            with postgres.errors_translated(self.cfg):
                conn = postgres.connect(self.cfg, autocommit=True, dbname=self.dbname)
            with self._cond:
                self._conns.append(conn)
            while True:
                with self._cond:
                    while not self._todo and not self._closing and not self._stopped:
                        self._cond.wait()
                    if self._stopped or not self._todo:
                        return
                    table, early = self._todo.pop(0)
                with postgres.errors_translated(self.cfg):
                    counted = self._count(conn, table, early)
                with self._cond:
                    if counted:
                        self._counted[(table["schema"], table["table"])] = counted[0]
                    elif self._closing:
                        self._todo.append((table, False))
                    else:
                        self._later.append(table)  # counted by counts(), after pg_restore
        except BaseException as e:  # raised by counts()
            with self._cond:
                if not self._stopped:
                    self._errors.append(e)
                self._closing = True
                self._todo.clear()
                self._cond.notify_all()
        finally:
            if conn is not None and (self._stopped or self._errors):
                with self._cond:
                    self._conns.remove(conn)
                conn.close()  # else counts() orders the names on it, and closes it

    def _count(self, conn: psycopg.Connection[Any], table: dict[str, Any], early: bool) -> tuple[int | None] | None:
        """(rows,), (None,) for a table that is not there, or None: counted too early."""
        row = conn.execute(_FIND, (table["schema"], table["table"])).fetchone()
        oid = row[0] if row else None
        if oid is None:
            return (None,)
        if early:
            related = conn.execute(_RELATED, (oid, oid)).fetchone()
            if related and related[0]:
                return None
        query = sql.SQL("SELECT count(*) FROM {only}{schema}.{table}").format(
            only=sql.SQL("ONLY " if self.own_rows else ""), schema=sql.Identifier(table["schema"]),
            table=sql.Identifier(table["table"]))
        counted = conn.execute(query).fetchone()
        return (int(counted[0]) if counted else 0,)
