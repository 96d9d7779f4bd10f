"""``report explain``: the PostgreSQL plan (flattened, seq scans on large tables flagged) or MongoDB's explain."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbcli.config.load import Config
from dbcli.reports.model import Report, _pg_error, mongo_error, mongo_pipeline, timeout

LARGE_TABLE_ROWS = 10_000  # a sequential scan below this is usually the right plan
PLAN_COLUMNS = ["node", "relation", "index", "est_rows", "est_cost", "actual_rows", "actual_ms", "loops",
                "warning"]


@dataclass
class Explained:
    report: str
    target: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per plan node (PostgreSQL)
    warnings: list[str] = field(default_factory=list)
    raw: Any = None  # the server's own explain output
    supported: bool = True


def explain(cfg: Config, report: Report, values: Mapping[str, Any], *, analyze: bool = False) -> Explained:
    if report.target == "postgres":
        return explain_postgres(cfg, report, values, analyze=analyze)
    return explain_mongo(cfg, report, values, analyze=analyze)


def explain_postgres(cfg: Config, report: Report, values: Mapping[str, Any], *,
                     analyze: bool = False) -> Explained:
    """EXPLAIN (FORMAT JSON) in the same read-only, time-limited transaction as ``report run``.

    With ``analyze`` the query really runs: a report that writes is refused exactly as in a run.
    """
    import psycopg
    from psycopg import sql

    from dbcli.postgres import connection as postgres

    assert report.sql is not None
    seconds = timeout(cfg)
    options = sql.SQL("FORMAT JSON, ANALYZE, BUFFERS") if analyze else sql.SQL("FORMAT JSON")
    query = sql.SQL("EXPLAIN ({}) {}").format(options, sql.SQL(report.sql))  # type: ignore[arg-type]
    conn = postgres.connect(cfg)
    try:
        conn.read_only = True
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(seconds * 1000))}ms",))
            cur.execute(query, dict(values), prepare=True)  # one statement only, as in reports.run_postgres
            row = cur.fetchone()
            plan = row[0] if row else []
            if isinstance(plan, str):
                import json

                plan = json.loads(plan)
            relations = sorted({(n.get("Schema") or "public", n["Relation Name"])
                                for n, _ in _walk(plan[0]["Plan"]) if n.get("Relation Name")})
            sizes = _table_rows(cur, relations)
        conn.rollback()
    except psycopg.Error as e:
        raise _pg_error(e, cfg, report, seconds) from None
    finally:
        conn.close()
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


def node_name(node: Mapping[str, Any]) -> str:
    """The names text EXPLAIN prints: Hash Left Join, HashAggregate, Parallel Seq Scan..."""
    kind = node.get("Node Type", "?")
    if kind == "Aggregate":
        kind = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate"}.get(
            node.get("Strategy", ""), "Aggregate")
    join = node.get("Join Type")
    if join and join != "Inner":
        kind = f"{kind} {join} Join" if kind == "Nested Loop" else kind.replace(" Join", f" {join} Join")
    if node.get("Parallel Aware"):
        kind = f"Parallel {kind}"
    return kind


def _table_rows(cur: Any, relations: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
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


def explain_mongo(cfg: Config, report: Report, values: Mapping[str, Any], *, analyze: bool = False) -> Explained:
    """The server's explain of the aggregate; ``supported`` is False where the server has none."""
    from pymongo.errors import OperationFailure, PyMongoError

    from dbcli.mongo import connection as mongo

    assert report.collection is not None
    pipeline = mongo_pipeline(report, values)
    mc = mongo.client(cfg)
    try:
        db = mongo.database(cfg, mc)
        try:
            raw = db.command("explain", {"aggregate": report.collection, "pipeline": pipeline, "cursor": {}},
                             verbosity="executionStats" if analyze else "queryPlanner")
        except OperationFailure as e:
            if e.code in (59, 115, 238):  # CommandNotFound, CommandNotSupported, NotImplemented
                return Explained(report.name, "mongo", supported=False)
            raise
        count = db[report.collection].estimated_document_count()
    except PyMongoError as e:
        raise mongo_error(report, e) from None
    finally:
        mc.close()
    raw.pop("$clusterTime", None)
    raw.pop("operationTime", None)
    result = Explained(report.name, "mongo", raw=raw)
    if count > LARGE_TABLE_ROWS and _full_scan(raw):
        result.warnings.append(f"full collection scan on {report.collection} (~{count:,} documents)")
    return result


def _full_scan(node: Any) -> bool:
    """MongoDB's COLLSCAN stage, or FerretDB's SQLite 'SCAN table' without an index."""
    if isinstance(node, Mapping):
        if node.get("stage") == "COLLSCAN":
            return True
        return any(_full_scan(v) for v in node.values())
    if isinstance(node, list):
        return any(_full_scan(v) for v in node)
    if isinstance(node, str):
        detail = node.split("detail=", 1)[-1]
        return detail.startswith("SCAN ") and "USING" not in detail
    return False
