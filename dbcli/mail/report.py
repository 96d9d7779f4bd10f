"""A report run as a mail: the HTML page as the body, the table as plain text for mail readers
that show no HTML, and the rows as a CSV attachment equal to ``report run -f csv`` (after a UTF-8
byte order mark, unless ``mail.csv_bom`` is off: Excel reads a CSV without one in a legacy code page).

The body shows the first ``mail.body_rows`` rows; the attachment always holds all of them."""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from dbcli.config.model import MailConfig
from dbcli.config.secrets import read_secret
from dbcli.errors import ConfigError
from dbcli.mail import smtp
from dbcli.mail.message import Attachment, Outgoing, address, compose
from dbcli.output import cell_text, counted, csv_text
from dbcli.reports import html
from dbcli.reports.model import Report
from dbcli.reports.running import ReportResult


def check(cfg: MailConfig, to: Sequence[str]) -> MailConfig:
    """Before the report runs: the mail settings are there and the password file reads (exit 3),
    each address is one (exit 5). Returns the settings with the password read, for the send."""
    address(smtp.check(cfg), "mail.from", error=ConfigError)
    for a in to:
        address(a, "--mail-to")
    if cfg.password is None and cfg.password_file:
        return dataclasses.replace(cfg, password=read_secret(cfg.password_file, "mail.password_file"),
                                   password_file=None)
    return cfg


def default_subject(report: Report, result: ReportResult) -> str:
    day = dt.datetime.fromtimestamp(result.computed_at or dt.datetime.now(dt.UTC).timestamp(), dt.UTC)
    return f"Report {report.name}, {day:%Y-%m-%d}"


def build(cfg: MailConfig, report: Report, values: Mapping[str, Any], result: ReportResult, *,
          to: Sequence[str], subject: str | None = None, chart: str | None = None,
          chart_label: str | None = None) -> Outgoing:
    """The whole message, ready to send: nothing is sent when any part of it cannot be made."""
    sender = smtp.check(cfg)
    attached = f"{report.name}.csv"
    where = (f"All {counted(len(result.rows), 'row')} are in the attached {attached}."
             if len(result.rows) > cfg.body_rows else f"The rows are attached as {attached}.")
    return compose(
        sender=sender, to=to, subject=subject if subject is not None else default_subject(report, result),
        html=html.page(report, values, result, chart=chart, chart_label=chart_label, limit=cfg.body_rows,
                       footnote=where),
        text=plain_text(report, values, result, cfg.body_rows, where),
        attachments=[Attachment(attached, "text/csv", csv_attachment(cfg, result))])


def csv_attachment(cfg: MailConfig, result: ReportResult) -> bytes:
    data = csv_text(result.rows, result.columns).encode("utf-8")
    return codecs.BOM_UTF8 + data if cfg.csv_bom else data


def plain_text(report: Report, values: Mapping[str, Any], result: ReportResult, limit: int, footnote: str) -> str:
    lines = [f"Report {report.name}"]
    if report.description:
        lines.append(report.description)
    lines += ["", f"Run at: {html.run_time(result)}", f"Rows: {len(result.rows)}"]
    lines += [f"{name}: {cell_text(value) if value is not None else '(none)'}" for name, value in values.items()]
    if not result.rows:
        lines += ["", "(no rows)"]
    elif limit:
        lines += ["", *text_table(result.rows[:limit], result.columns)]
        if len(result.rows) > limit:
            lines.append(f"(the first {limit} of {len(result.rows)} rows)")
    lines += ["", footnote]
    return "\n".join(lines) + "\n"


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """Rows as aligned plain text (numbers to the right), psql-like: no box-drawing characters,
    which a mail reader with a proportional font scatters, and no wrapping at 80 columns."""
    numeric = html.numeric_columns(rows, columns)
    cells = [[("null" if r.get(c) is None else cell_text(r.get(c))).replace("\r", " ").replace("\n", " ")
              for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(row) for row in cells)]
