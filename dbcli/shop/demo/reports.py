"""The demo's reports step: three built-in reports on the demo data, one drawn as a bar chart."""

from __future__ import annotations

from dbcli.config.model import Config
from dbcli.output import Output, counted
from dbcli.reports import charts, mongo_runner, pg_runner, registry


def step(cfg: Config, out: Output) -> None:
    """Three built-in reports on the demo data, one drawn as a bar chart."""
    wide = {"from": "2000-01-01", "to": "today"}
    steps: list[tuple[str, dict[str, str], str | None]] = [
        ("revenue-by-category", {**wide, "min_revenue": "0"}, "revenue"),
        ("user-orders", {"user_id": "1"}, None),
        ("activity-by-type", wide, None) if cfg.mongo.configured else ("top-customers", {"limit": "5"}, None),
    ]
    for name, given, chart in steps:
        report = registry.get(cfg, name)
        args = " ".join(f"--param {k}={v}" for k, v in given.items())
        out.info(f"$ dbcli report run {name} {args}" + (f" --chart {chart}" if chart else ""))
        runner = pg_runner if report.target == "postgres" else mongo_runner
        result = runner.run(cfg, report, report.resolve(given))
        shown = result.rows[:10]
        out.rows(shown, result.columns, extended=result.extended)
        if len(result.rows) > len(shown):
            out.info(f"({counted(len(result.rows) - len(shown), 'more row')})")
        if chart and shown and not out.quiet:
            charts.render(out, shown, result.columns, chart, to_stderr=out.fmt != "table")
