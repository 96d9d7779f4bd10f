"""Any Citus coordinator, local or not: is the extension there, which version, are the workers answering.

Plain PostgreSQL answers "no Citus" and every caller carries on as before; nothing here changes data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class Worker:
    host: str
    port: int
    ok: bool
    error: str | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Cluster:
    citus_version: str
    workers: list[Worker]

    @property
    def active(self) -> int:
        return sum(w.ok for w in self.workers)


def version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus version installed in the connection's database, or None on plain PostgreSQL."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    if not row:
        return None
    # the release (14.0.1), not the catalog version the extension reports (14.0-1)
    full = conn.execute("SELECT (regexp_match(citus_version(), 'Citus ([^ ]+)'))[1]").fetchone()
    return str(full[0]) if full and full[0] else str(row[0])


def cluster(conn: psycopg.Connection[Any], timeout: float) -> Cluster | None:
    """The Citus version and each registered worker, reached from the coordinator with a trivial
    command (``run_command_on_workers``): a worker that is down or refuses shows ``ok`` false.
    None on plain PostgreSQL. ``conn`` must be in autocommit mode."""
    found = version(conn)
    if found is None:
        return None
    # Citus's own default is 30 s per connection attempt: a ping waits no longer than dbcli's connect timeout
    ms = str(max(1000, int(timeout * 1000)))
    conn.execute("SELECT set_config('citus.node_connection_timeout', %s, false)", (ms,))
    registered = conn.execute("SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary'"
                              " AND groupid <> 0 ORDER BY nodeid").fetchall()
    answers = {(str(r[0]), int(r[1])): (bool(r[2]), str(r[3]))
               for r in conn.execute("SELECT nodename, nodeport, success, result"
                                     " FROM run_command_on_workers('SELECT 1')").fetchall()}
    workers = []
    for host, port in registered:
        ok, result = answers.get((str(host), int(port)), (False, "not reached"))
        workers.append(Worker(str(host), int(port), ok, None if ok else result.strip()[:200]))
    return Cluster(found, workers)


def distributed_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str | None]]:
    """(table, citus_table_type, distribution column) of each Citus table; empty on plain PostgreSQL."""
    if version(conn) is None:
        return []
    rows = conn.execute("SELECT table_name::text, citus_table_type, distribution_column FROM citus_tables"
                        " ORDER BY 1").fetchall()
    return [(str(r[0]), str(r[1]), None if r[2] in (None, "<none>") else str(r[2])) for r in rows]


def coordinator_address(conn: psycopg.Connection[Any]) -> tuple[str, int] | None:
    """The coordinator's address as its own metadata registers it (or as the connection reached it);
    None on plain PostgreSQL."""
    if version(conn) is None:
        return None
    row = conn.execute("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 0"
                       " UNION ALL SELECT 'localhost', inet_server_port() LIMIT 1").fetchone()
    assert row is not None
    return str(row[0]), int(row[1] or 5432)


def prepare_scratch(conn: psycopg.Connection[Any], coordinator: tuple[str, int]) -> None:
    """Make a new, empty database of the coordinator a single-node Citus database: the extension, and
    the coordinator registered as the only node, so that migrations that call create_distributed_table
    or create_reference_table distribute there as they did in the live database (its shards stay on
    the coordinator; the workers never see the database). ``conn``: autocommit, to that database."""
    conn.execute("CREATE EXTENSION citus")
    conn.execute("SELECT citus_set_coordinator_host(%s, %s)", coordinator)
    conn.execute("SELECT citus_set_node_property(%s, %s, 'shouldhaveshards', true)", coordinator)
