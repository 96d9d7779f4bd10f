"""Running a MongoDB report: typed parameters substituted as values, the aggregate under ``maxTimeMS``,
then the client-side ``post`` steps.

This module imports pymongo (~100 ms): the CLI loads it only for a MongoDB report.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pymongo
from bson.decimal128 import Decimal128
from pymongo.errors import ExecutionTimeout, NetworkTimeout, PyMongoError

from dbcli.config.model import Config
from dbcli.errors import DbcliError
from dbcli.mongo import connection as mongo
from dbcli.output import columns_of
from dbcli.reports import post
from dbcli.reports.model import Report
from dbcli.reports.running import ReportResult, named, timeout_error, timeout_ms


def run(cfg: Config, report: Report, values: Mapping[str, Any]) -> ReportResult:
    """Run ``report`` (target mongo) with typed ``values``; rows keep their BSON types."""
    started = time.time()
    columns, rows = query(cfg, report, values)
    return ReportResult(report.name, columns, rows, computed_at=started, extended=True)


def query(cfg: Config, report: Report, values: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    assert report.collection is not None
    seconds = cfg.reports.timeout
    stages = pipeline(report, values)
    mc = mongo.client(cfg)
    try:
        # the report's own limit, for every round trip of it: without it mongo.socket_timeout
        # (60 s by default) would cut a report that reports.timeout (300 s) allows
        with pymongo.timeout(seconds):
            coll = mongo.database(cfg, mc)[report.collection]
            docs = coll.aggregate(stages, maxTimeMS=timeout_ms(seconds))
            rows: post.Rows = post.shape(docs, report.id_field, report.flatten)
            for step in substitute(report.post, values):
                rows = post.apply(step, rows)
            rows = list(rows)
    except (ExecutionTimeout, NetworkTimeout):  # the server's maxTimeMS, or the deadline on a socket read
        raise timeout_error(report, seconds) from None
    except PyMongoError as e:
        raise mongo_error(report, e) from None
    finally:
        mc.close()
    columns = list(report.columns) if report.columns else columns_of(rows)
    return columns, [{c: r.get(c) for c in columns} for r in rows]


def mongo_error(report: Report, e: Exception) -> DbcliError:
    """A driver error as a dbcli error, naming the report."""
    return named(report, mongo.translate(e))


def bson_value(value: Any) -> Any:
    """A typed parameter as a BSON value: dates become 'YYYY-MM-DD' (the stored day keys)."""
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace every ``{$param: NAME}`` by the value itself: structure in, structure out."""
    if isinstance(node, dict):
        if set(node) == {"$param"}:
            return bson_value(values[str(node["$param"])])
        return {k: substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    return node


def pipeline(report: Report, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's aggregation pipeline with its parameters substituted."""
    return list(substitute(report.pipeline or [], values))
