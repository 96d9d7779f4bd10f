"""What the PostgreSQL and MongoDB runners share: the result a run gives, and the time limit
(``reports.timeout``) as each server takes it and as the error when a report takes longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbcli.errors import DbcliError, UnreachableError
from dbcli.reports.model import Report


@dataclass
class ReportResult:
    report: str
    columns: list[str]
    rows: list[dict[str, Any]]
    cached: bool = False
    computed_at: float = 0.0  # epoch seconds when the rows were read from the database
    extended: bool = False  # MongoDB rows: render BSON types as Extended JSON


def timeout_ms(seconds: float) -> int:
    """For ``statement_timeout`` and ``maxTimeMS``: at least 1 ms, as 0 means no limit to both servers."""
    return max(1, int(seconds * 1000))


def timeout_error(report: Report, seconds: float) -> DbcliError:
    return UnreachableError(f"report {report.name!r} timed out after {seconds:g}s",
                            hint="raise reports.timeout, or narrow the parameters")


def named(report: Report, err: DbcliError) -> DbcliError:
    """A translated driver error, its message prefixed with the report's name."""
    err.message = f"report {report.name!r}: {err.message}"
    return err
