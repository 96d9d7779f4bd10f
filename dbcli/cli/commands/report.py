"""dbcli report list | show | run | explain"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli.options import ParamOpt, ReportNameArg
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dbcli.cache.store import ResultCache
    from dbcli.config.model import Config, MailConfig
    from dbcli.output import Output
    from dbcli.reports.explain import Explained
    from dbcli.reports.model import Report
    from dbcli.reports.running import ReportResult

app = typer.Typer(help="Built-in and team reports: list, show, run (cached, charted) and explain.",
                  no_args_is_help=True)

LIST_COLUMNS = ["name", "target", "params", "description"]
RunFormatOpt = Annotated[str | None, typer.Option(
    "--format", "-f", help="Output format: table, json, jsonl, csv or html (one self-contained page: "
    "parameters, run time, the table and the --chart as SVG; default: table on a TTY, json otherwise; "
    "or $DBCLI_FORMAT).", show_default=False)]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write the rows to FILE atomically (format "
                      "from --format, else from the extension, else json).", show_default=False)]
ChartOpt = Annotated[str | None, typer.Option("--chart", help="Also draw a horizontal bar chart of this numeric "
                     "column (on stdout with the table format, else on stderr; inside the page with html).",
                     show_default=False)]
ChartLabelOpt = Annotated[str | None, typer.Option("--chart-label", help="Column labelling the bars (default: the "
                          "first other column).", show_default=False)]
CacheOpt = Annotated[bool | None, typer.Option("--cache/--no-cache", help="Serve from / store in the result cache "
                     "(default: on when cache.ttl > 0).", show_default=False)]
TtlOpt = Annotated[int | None, typer.Option("--ttl", help="Seconds a cached result stays valid; implies --cache "
                   "(default: cache.ttl, else 300).", show_default=False, min=1)]
MailToOpt = Annotated[list[str] | None, typer.Option("--mail-to", help="Mail the report to ADDRESS (repeat for "
                      "several): the HTML page as the body, the rows as a CSV attachment, through the mail: "
                      "settings; the rows are then not printed (-o still writes its file).", show_default=False)]
MailSubjectOpt = Annotated[str | None, typer.Option("--mail-subject", help="Subject of the mail (default: Report "
                           "NAME, DATE).", show_default=False)]


@app.command("list")
def list_reports(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """List the reports: built-in ones and those in reports.dir (exit 3 on a name clash).

    Example:
        dbcli report list --format table
    """
    from dbcli.reports import registry

    st = state(ctx)
    rows = [{"name": r.name, "target": r.target, "params": " ".join(p.summary() for p in r.params),
             "description": r.description, "origin": "built-in" if r.builtin else str(r.path)}
            for r in registry.load_all(st.config)]
    st.output(fmt, quiet).rows(rows, [*LIST_COLUMNS, "origin"])


@app.command("show")
def show(ctx: typer.Context, name: ReportNameArg, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show a report's definition: parameters, sources, and its SQL or pipeline.

    Example:
        dbcli report show user-orders
    """
    from dbcli.reports import registry

    st = state(ctx)
    report = registry.get(st.config, name)
    out = st.output(fmt, quiet)
    record = report.as_record()
    if out.fmt == "table" and not out.quiet:
        # the query is read as text, not squeezed into a table cell
        body = record.pop("sql", None)
        record["params"] = "\n".join(p.summary() + (f"  {p.description}" if p.description else "")
                                     for p in report.params)
        record["sources"] = ", ".join(report.sources)
        out.record(record, title=f"report {report.name}")
        if body is not None:
            out.stdout.write(body + "\n")
        return
    out.record(record, extended=True)


@app.command("run")
def run(ctx: typer.Context, name: ReportNameArg, param: ParamOpt = None, output: OutputOpt = None,
        chart: ChartOpt = None, chart_label: ChartLabelOpt = None, use_cache: CacheOpt = None, ttl: TtlOpt = None,
        mail_to: MailToOpt = None, mail_subject: MailSubjectOpt = None, fmt: RunFormatOpt = None,
        quiet: QuietOpt = False) -> None:
    """Run a report with typed parameters (exit 5 naming a missing or invalid one).

    PostgreSQL reports run in a READ ONLY transaction under reports.timeout (exit 4 when
    exceeded, exit 7 if the SQL tries to write). A mail that cannot be sent exits 4 with the
    server's reply (3 when mail: is not configured); nobody is sent part of it.

    Example:
        dbcli report run user-orders --param user_id=42 --format csv -o orders.csv
        dbcli report run daily-revenue -P from=today-7d --chart revenue -f html -o week.html
        dbcli report run daily-revenue -P from=today-7d --chart revenue --mail-to team@example.com
    """
    from dbcli.reports import registry
    from dbcli.reports.params import parse_param_args

    st = state(ctx)
    cfg = st.config
    report = registry.get(cfg, name)
    values = report.resolve(parse_param_args(param or []))
    file_fmt = fmt or st.fmt or (_format_from_extension(output) if output else None)
    # $DBCLI_FORMAT chooses what stdout gets, never a file's format (as for the other formats)
    as_html = (file_fmt or (os.environ.get("DBCLI_FORMAT") if output is None else None) or "").lower() == "html"
    out = st.output("json" if as_html else file_fmt, quiet)  # html: the page is written here, out carries messages
    mail_cfg = None
    if mail_to:
        from dbcli.mail import report as mailing

        # a missing mail: section, password file or a bad address: before the report runs
        mail_cfg = mailing.check(cfg.mail, mail_to)
    elif mail_subject is not None:
        from dbcli.errors import UsageError

        raise UsageError("--mail-subject needs --mail-to")
    cache = _cache(cfg, out, use_cache, ttl)
    if cache is None:
        result = _run(cfg, report, values)
    else:
        from dbcli.reports import cached

        try:
            result = cached.run(cfg, report, values, cache, _run)
        finally:
            cache.close()
    if chart is not None:
        from dbcli.reports import charts

        charts.bars(result.rows, result.columns, chart, chart_label)  # validate before writing anything
    if result.cached:
        out.info(f"from the cache (computed {max(0, int(time.time() - result.computed_at))}s ago)")
    if mail_to and mail_cfg is not None:
        _mail(mail_cfg, out, report, values, result, mail_to, mail_subject, chart, chart_label, output, file_fmt)
        return
    if output is not None:
        _write_file(output, file_fmt, result, report, values, chart, chart_label)
        out.info(f"wrote {len(result.rows)} rows to {output}")
    elif as_html:
        from dbcli.reports import html

        if not out.quiet:
            out.stdout.write(html.page(report, values, result, chart=chart, chart_label=chart_label))
            out.stdout.flush()
    else:
        out.rows(result.rows, result.columns, extended=result.extended)
    if chart is not None and not out.quiet and not as_html:
        from dbcli.reports import charts

        charts.render(out, result.rows, result.columns, chart, chart_label,
                      to_stderr=output is None and out.fmt != "table")


def _run(cfg: Config, report: Report, values: Mapping[str, Any]) -> ReportResult:
    # only the report's own driver, and only when the cache has no result: psycopg and pymongo
    # each cost ~100 ms to import, more than a cache hit takes
    if report.target == "postgres":
        from dbcli.reports import pg_runner

        return pg_runner.run(cfg, report, values)
    from dbcli.reports import mongo_runner

    return mongo_runner.run(cfg, report, values)


def _format_from_extension(path: Path) -> str | None:
    return {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".html": "html",
            ".htm": "html"}.get(path.suffix.lower())


def _write_file(path: Path, fmt: str | None, result: ReportResult, report: Report, values: Mapping[str, Any],
                chart: str | None, chart_label: str | None) -> None:
    from dbcli.fsutil import atomic_write

    if (fmt or "").lower() == "html":
        from dbcli.reports import html

        page = html.page(report, values, result, chart=chart, chart_label=chart_label)
        with atomic_write(path) as fh:
            fh.write(page)
        return
    from dbcli.output import Output

    with atomic_write(path, newline="") as fh:
        # the file gets data only: a table is drawn without colour, messages stay on stderr
        Output(fmt=fmt or "json", stdout=fh, no_color=True).rows(
            result.rows, result.columns, extended=result.extended)


def _mail(cfg: MailConfig, out: Output, report: Report, values: Mapping[str, Any], result: ReportResult,
          to: list[str], subject: str | None, chart: str | None, chart_label: str | None,
          output: Path | None, fmt: str | None) -> None:
    from dbcli.mail import report as mailing
    from dbcli.mail import smtp

    # the whole message first: nothing is written or sent when a part of it cannot be made; then
    # the file, so that a cron job retrying a failed send rewrites the same file and mails once
    outgoing = mailing.build(cfg, report, values, result, to=to, subject=subject, chart=chart,
                             chart_label=chart_label)
    if output is not None:
        _write_file(output, fmt, result, report, values, chart, chart_label)
        out.info(f"wrote {len(result.rows)} rows to {output}")
    smtp.send(cfg, outgoing)
    out.info(f"mailed {len(result.rows)} rows of {report.name} to {', '.join(outgoing.recipients)}")


def _cache(cfg: Config, out: Output, use_cache: bool | None, ttl: int | None) -> ResultCache | None:
    configured = cfg.cache.ttl
    if use_cache is None:
        use_cache = bool(ttl) or configured > 0  # asking for a TTL is asking for the cache
    if not use_cache:
        return None  # and dbcli.cache (sqlite3, hashlib...) is never imported
    from dbcli.cache import store as cache

    return cache.ResultCache(cfg, ttl=ttl or configured or cache.DEFAULT_TTL, on_warning=out.warn)


@app.command("explain")
def explain(
    ctx: typer.Context,
    name: ReportNameArg,
    param: ParamOpt = None,
    analyze: Annotated[bool, typer.Option("--analyze", help="Run the query and show actual rows and times "
                       "(still read-only).")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Print the server's own explain output as JSON.")] = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Show how a report runs: the PostgreSQL plan, with sequential scans on large tables flagged.

    For MongoDB reports, the server's explain of the pipeline where it has one.

    Example:
        dbcli report explain user-orders --param user_id=42 --analyze
    """
    from dbcli.reports import registry
    from dbcli.reports.explain import PLAN_COLUMNS
    from dbcli.reports.params import parse_param_args

    st = state(ctx)
    report = registry.get(st.config, name)
    values = report.resolve(parse_param_args(param or []))
    result = _explain(st.config, report, values, analyze)
    out = st.output(fmt, quiet)
    if not result.supported:
        out.info(f"explain is not supported by this MongoDB-wire server (report {report.name!r})")
        return
    if raw or result.target == "mongo":
        out.record({"report": report.name, "target": result.target, "plan": result.raw}, extended=True)
    else:
        out.rows(result.rows, PLAN_COLUMNS)
    for warning in result.warnings:
        out.warn(warning)


def _explain(cfg: Config, report: Report, values: Mapping[str, Any], analyze: bool) -> Explained:
    # as in run: only the report's own driver is imported
    if report.target == "postgres":
        from dbcli.reports import explain_pg

        return explain_pg.explain(cfg, report, values, analyze=analyze)
    from dbcli.reports import explain_mongo

    return explain_mongo.explain(cfg, report, values, analyze=analyze)
