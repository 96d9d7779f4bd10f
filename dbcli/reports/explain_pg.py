"""The PostgreSQL plan of a report: flattened to one row per node, seq scans on large tables flagged."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import sql

from dbcli.config.model import Config
from dbcli.reports.explain import LARGE_TABLE_ROWS, Explained
from dbcli.reports.model import Report
from dbcli.reports.pg_runner import read_only


def explain(cfg: Config, report: Report, values: Mapping[str, Any], *, analyze: bool = False) -> Explained:
    """EXPLAIN (FORMAT JSON) in the same read-only, time-limited transaction as ``report run``.

    With ``analyze`` the query really runs: a report that writes is refused exactly as in a run.
    """
    assert report.sql is not None
    options = sql.SQL("FORMAT JSON, ANALYZE, BUFFERS") if analyze else sql.SQL("FORMAT JSON")
    query = sql.SQL("EXPLAIN ({}) {}").format(options, sql.SQL(report.sql))
    with read_only(cfg, report) as cur:
        cur.execute(query, dict(values), prepare=True)  # one statement only, as in pg_runner.query
        row = cur.fetchone()
        plan = row[0] if row else []
        if isinstance(plan, str):
            plan = json.loads(plan)
        relations = sorted({(n.get("Schema") or "public", n["Relation Name"])
                            for n, _ in _walk(plan[0]["Plan"]) if n.get("Relation Name")})
        sizes = _table_rows(cur, relations)
    result = Explained(report.name, "postgres", raw=plan)
    for node, depth in _walk(plan[0]["Plan"]):
        relation = node.get("Relation Name")
        warning = None
        if node.get("Node Type") == "Seq Scan" and relation:
            n = sizes.get((node.get("Schema") or "public", relation), 0)
            if n > LARGE_TABLE_ROWS:
                warning = f"seq scan on a large table (~{n:,} rows)"
                result.warnings.append(f"sequential scan on {relation} (~{n:,} rows)")
        result.rows.append({
            "node": ("  " * depth + "-> " if depth else "") + node_name(node),
            "relation": relation,
            "index": node.get("Index Name"),
            "est_rows": node.get("Plan Rows"),
            "est_cost": node.get("Total Cost"),
            "actual_rows": node.get("Actual Rows"),
            "actual_ms": node.get("Actual Total Time"),
            "loops": node.get("Actual Loops"),
            "warning": warning,
        })
    return result


def _walk(node: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[Mapping[str, Any], int]]:
    yield node, depth
    for child in node.get("Plans") or []:
        yield from _walk(child, depth + 1)
    # a Citus coordinator's plan: each task (the node it runs on) with the plan it ran there
    job = (node.get("Distributed Query") or {}).get("Job") or {}
    for task in job.get("Tasks") or []:
        where = dict(p.split("=", 1) for p in str(task.get("Node", "")).split() if "=" in p)
        yield {"Node Type": f"Task on {where.get('host', '?')}:{where.get('port', '?')}"}, depth + 1
        for plans in task.get("Remote Plan") or []:
            for remote in plans:
                yield from _walk(remote["Plan"], depth + 2)


def node_name(node: Mapping[str, Any]) -> str:
    """The names text EXPLAIN prints: Hash Left Join, HashAggregate, Parallel Seq Scan..."""
    kind = node.get("Node Type", "?")
    if node.get("Custom Plan Provider"):
        tasks = ((node.get("Distributed Query") or {}).get("Job") or {}).get("Task Count")
        kind = f"{kind} ({node['Custom Plan Provider']})" + (f", {tasks} task(s)" if tasks is not None else "")
    if kind == "Aggregate":
        kind = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate"}.get(
            node.get("Strategy", ""), "Aggregate")
    join = node.get("Join Type")
    if join and join != "Inner":
        kind = f"{kind} {join} Join" if kind == "Nested Loop" else kind.replace(" Join", f" {join} Join")
    if node.get("Parallel Aware"):
        kind = f"Parallel {kind}"
    return kind


def _table_rows(cur: psycopg.Cursor[Any], relations: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Row counts from the planner's statistics (reltuples; the live-tuple count before ANALYZE)."""
    if not relations:
        return {}
    cur.execute(
        "SELECT n.nspname, c.relname, greatest(c.reltuples, coalesce(s.n_live_tup, 0))::bigint"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid"
        " WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([s for s, _ in relations], [r for _, r in relations]))
    return {(s, r): int(n) for s, r, n in cur.fetchall()}
