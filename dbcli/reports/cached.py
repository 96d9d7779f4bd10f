"""Report results through the result cache: what an entry depends on, lookup, and store on a miss.

An entry's key covers the report's file (its digest), the typed parameters, the profile, the
database read and, added by the cache, the versions of the report's sources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dbcli.cache.codec import encode
from dbcli.cache.keys import source_names
from dbcli.cache.store import ResultCache
from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.reports.model import Report
from dbcli.reports.running import ReportResult

Runner = Callable[[Config, Report, Mapping[str, Any]], ReportResult]  # pg_runner.run or mongo_runner.run


def run(cfg: Config, report: Report, values: Mapping[str, Any], cache: ResultCache, runner: Runner) -> ReportResult:
    """The cached result when there is a fresh one, else ``runner``'s, stored for next time."""
    key = cache.key(cache_parts(cfg, report, values), source_names(report.target, report.sources))
    hit = cache.get(key) if key else None
    if hit is not None:
        columns = hit["columns"]
        return ReportResult(report.name, columns, [dict(zip(columns, r, strict=True)) for r in hit["rows"]],
                            cached=True, computed_at=hit["at"], extended=report.target == "mongo")
    result = runner(cfg, report, values)
    if key:
        cache.put(key, {"columns": result.columns, "rows": [[r.get(c) for c in result.columns] for r in result.rows],
                        "at": result.computed_at})
    return result


def cache_parts(cfg: Config, report: Report, values: Mapping[str, Any]) -> dict[str, Any]:
    """What a cached result depends on, besides the source versions the cache adds."""
    return {"report": report.name, "digest": report.digest, "profile": cfg.profile,
            "target": target_identity(cfg, report.target),
            "params": encode(dict(sorted(values.items()))).hex()}


def target_identity(cfg: Config, target: str) -> str:
    """The database a report reads, without secrets: two configs both named ``default`` differ here."""
    if target == "postgres":
        pg = cfg.postgres
        parts = [pg.dsn or "", pg.host or "", str(pg.port or ""), pg.dbname or "", pg.user or "",
                 pg.data_dir if pg.embedded else ""]
    else:
        mg = cfg.mongo
        parts = [mg.uri or "", mg.database, mg.data_dir if mg.embedded else ""]
    return redact_text("|".join(parts))
