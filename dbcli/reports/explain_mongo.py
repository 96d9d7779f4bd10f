"""The MongoDB explain of a report's aggregate, full collection scans on large collections flagged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from dbcli.config.model import Config
from dbcli.mongo import connection as mongo
from dbcli.reports.explain import LARGE_TABLE_ROWS, Explained
from dbcli.reports.model import Report
from dbcli.reports.mongo_runner import mongo_error, pipeline

_NO_EXPLAIN = (59, 115, 238)  # CommandNotFound, CommandNotSupported, NotImplemented


def explain(cfg: Config, report: Report, values: Mapping[str, Any], *, analyze: bool = False) -> Explained:
    """The server's explain of the aggregate; ``supported`` is False where the server has none."""
    assert report.collection is not None
    stages = pipeline(report, values)
    mc = mongo.client(cfg)
    try:
        db = mongo.database(cfg, mc)
        try:
            raw = db.command("explain", {"aggregate": report.collection, "pipeline": stages, "cursor": {}},
                             verbosity="executionStats" if analyze else "queryPlanner")
        except OperationFailure as e:
            if e.code in _NO_EXPLAIN:
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
