"""``report explain``: what a plan looks like once read (:mod:`dbcli.reports.explain_pg` reads
PostgreSQL's, :mod:`dbcli.reports.explain_mongo` MongoDB's; each loads only its own driver).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
