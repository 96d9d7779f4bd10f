"""All or nothing over several connections: the commit of ``table import --jobs N``.

Every part is loaded in its own transaction. Where the server allows prepared transactions
(``max_prepared_transactions`` at least the number of parts), each part is prepared as
``dbcli_import_<group>_<n>`` (n = 1..N, in order), then all are committed with ``COMMIT
PREPARED`` in the same order. The commit of part 1 is the decision: a group whose part 1 is still
prepared never started committing (roll every part back); a group without it did (commit the
rest). A crash anywhere leaves prepared transactions that :func:`recover` settles that way the
next time an import runs; while its dbcli runs, a group is guarded by a session advisory lock, so
a live import is never touched. Without prepared transactions the parts are committed one after
the other: a crash in that window (milliseconds) can leave the first parts committed.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

GID_PREFIX = "dbcli_import_"
_GID = re.compile(r"^dbcli_import_(?P<group>[0-9a-f]{32})_(?P<n>\d+)$")
_LOCK = sql.SQL("hashtextextended({}, 0)")


def new_group() -> str:
    return uuid.uuid4().hex


def gid(group: str, n: int) -> str:
    """The prepared transaction of part ``n`` (1-based) of ``group``."""
    return f"{GID_PREFIX}{group}_{n}"


def two_phase_slots(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT current_setting('max_prepared_transactions')::int").fetchone()
    return int(row[0]) if row else 0


def guard(control: psycopg.Connection[Any], group: str) -> None:
    """Hold the group's advisory lock on ``control`` (autocommit) while this dbcli runs."""
    control.execute(sql.SQL("SELECT pg_advisory_lock({})").format(_LOCK.format(sql.Literal(group))))


def release(control: psycopg.Connection[Any], group: str) -> None:
    with contextlib.suppress(psycopg.Error):
        control.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(_LOCK.format(sql.Literal(group))))


def prepare(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(name)))


def commit_prepared(control: psycopg.Connection[Any], name: str) -> None:
    control.execute(sql.SQL("COMMIT PREPARED {}").format(sql.Literal(name)))


def rollback_prepared(control: psycopg.Connection[Any], names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(psycopg.errors.UndefinedObject):
            control.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(name)))


def leftovers(control: psycopg.Connection[Any]) -> dict[str, list[tuple[int, str]]]:
    """This database's prepared dbcli import parts of this user, by group: [(n, gid)] in order."""
    rows = control.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
                           "AND owner = current_user AND gid LIKE 'dbcli\\_import\\_%'").fetchall()
    groups: dict[str, list[tuple[int, str]]] = {}
    for (name,) in rows:
        m = _GID.match(name)
        if m:
            groups.setdefault(m["group"], []).append((int(m["n"]), name))
    return {g: sorted(parts) for g, parts in groups.items()}


def recover(control: psycopg.Connection[Any]) -> list[tuple[str, str, int]]:
    """Settle the groups a killed dbcli left prepared; [(group, "committed"|"rolled back", parts)].

    ``control`` is an autocommit connection as the same user (or a superuser). A group whose
    dbcli still runs holds its advisory lock and is left alone.
    """
    done = []
    for group in leftovers(control):
        row = control.execute(sql.SQL("SELECT pg_try_advisory_lock({})").format(
            _LOCK.format(sql.Literal(group)))).fetchone()
        if not row or not row[0]:
            continue
        try:
            parts = leftovers(control).get(group, [])  # again under the lock: its dbcli may just have ended
            names = [name for _, name in parts]
            if not parts:
                continue
            if parts[0][0] == 1:  # the decision (part 1's commit) was never taken
                rollback_prepared(control, names)
                done.append((group, "rolled back", len(names)))
            else:
                for name in names:
                    with contextlib.suppress(psycopg.errors.UndefinedObject):
                        commit_prepared(control, name)
                done.append((group, "committed", len(names)))
        finally:
            release(control, group)
    return done
