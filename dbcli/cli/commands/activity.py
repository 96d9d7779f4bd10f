"""dbcli activity record | ingest | rebuild-stats | stats | top"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.output import Output

app = typer.Typer(help="Record user activity in MongoDB, exactly once, and read the counters.",
                  no_args_is_help=True)

RECORD_COLUMNS = ["event_id", "user_id", "type", "timestamp", "recorded"]


@app.command("record")
def record(
    ctx: typer.Context,
    user: Annotated[int, typer.Option("--user", "-u", help="User id (must exist in PostgreSQL users).",
                                      show_default=False)],
    kind: Annotated[str, typer.Option("--type", "-t", help="Activity type, e.g. page.view (lowercase, "
                                      "digits, _ . -).", show_default=False)],
    data: Annotated[str | None, typer.Option("--data", "-d", help="Event attributes as a JSON object.",
                                             show_default=False)] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it happened: ISO-8601 (no zone = UTC) or "
                                           "epoch seconds. Default: now.", show_default=False)] = None,
    event_id: Annotated[str | None, typer.Option("--event-id", help="Idempotency key; recording the same id "
                                                 "again changes nothing. Default: a hash of the event.",
                                                 show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Record one event: stored with the user's name and tier, counted, bucketed (exit 6: unknown user).

    Example:
        dbcli activity record --user 42 --type page.view --data '{"path": "/cart"}' --event-id req-8812
    """
    import json

    from dbcli.errors import InvalidInputError
    from dbcli.shop.activity import record as activity

    st = state(ctx)
    out = st.output(fmt, quiet)
    parsed: Any = None
    if data is not None:
        try:
            parsed = json.loads(data)
        except ValueError as e:
            raise InvalidInputError(f"--data is not valid JSON: {str(e).splitlines()[0][:80]}") from None
    result = activity.record(st.config, user, kind, data=parsed, at=at, event_id=event_id)
    if not result["recorded"]:
        out.info(f"event {result['event_id']} was already recorded: nothing changed")
    out.record(result)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="JSONL file, or - for stdin.", show_default=False)],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Store the valid lines and report the "
                                               "bad ones (default: any bad line stops everything).")] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", show_default=False, help=(
        "Events per batch (one bulk write per collection) [default: 20000; 5000 on FerretDB 1.x]."))] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Ingest JSONL events exactly once: validated first, then written in batches (exit 5: bad lines).

    One event per line: user_id, type, timestamp (or at), optional data and event_id.
    Ingesting the same file again changes nothing.

    Example:
        dbcli activity ingest events.jsonl --skip-invalid
    """
    from dbcli.shop.activity import ingest as activity_ingest

    st = state(ctx)
    out = st.output(fmt, quiet)
    try:
        with _progress(out) as bar:
            result = activity_ingest.ingest(st.config, source, skip_invalid=skip_invalid,
                                            batch_size=batch_size, progress=bar)
    except activity_ingest.InvalidLinesError as e:
        _show_problems(out, e.problems, "")
        raise
    _show_problems(out, result.problems, " (skipped)")
    if result.recovered_users:
        out.info(f"recovered the counters of {result.recovered_users} users left by an interrupted run")
    out.info(f"{result.inserted} events stored, {result.duplicates} already recorded, {result.invalid} invalid")
    out.record(result.as_record())


def _show_problems(out: Output, problems: list[tuple[int, str]], suffix: str) -> None:
    from dbcli.shop.activity.ingest import SHOWN_LINES

    for lineno, problem in problems[:SHOWN_LINES]:
        out.warn(f"line {lineno}: {problem}{suffix}")
    if len(problems) > SHOWN_LINES:
        out.warn(f"... and {len(problems) - SHOWN_LINES} more invalid lines{suffix}")


@contextmanager
def _progress(out: Output) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal and not --quiet; otherwise None."""
    if out.quiet or not out.stderr_tty:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=out.err_console(), transient=True)
    task = bar.add_task("events", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@app.command("rebuild-stats")
def rebuild_stats(
    ctx: typer.Context,
    user: Annotated[int | None, typer.Option("--user", "-u", help="Only this user (default: everyone).",
                                             show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Recompute user_stats and activity_buckets from the events (a repair; run it with no writer active).

    Example:
        dbcli activity rebuild-stats --user 42
    """
    from dbcli.shop.activity import recompute
    from dbcli.shop.activity.model import skipped_note

    st = state(ctx)
    out = st.output(fmt, quiet)
    totals = recompute.rebuild(st.config, user)
    out.info(f"recomputed {totals['users']} users from {totals['events']} events")
    if totals["skipped"]:
        out.warn(skipped_note(totals["skipped"]))
    out.record(totals)


@app.command("stats")
def stats(
    ctx: typer.Context,
    user: Annotated[int, typer.Argument(help="User id.", show_default=False)],
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """A user's counters: total, first and last activity, count per type (exit 6: no activity).

    Example:
        dbcli activity stats 42 --format json
    """
    from dbcli.shop.activity import stats as activity_stats
    from dbcli.shop.activity.model import skipped_note

    st = state(ctx)
    out = st.output(fmt, quiet)
    doc, skipped = activity_stats.user_report(st.config, user)
    if skipped:
        out.warn(skipped_note(skipped, user))
    out.record(activity_stats.stats_row(doc))


@app.command("top")
def top(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="First day, YYYY-MM-DD or 7d (7 days ago, UTC).",
                                              show_default=False)] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (inclusive), YYYY-MM-DD or Nd.",
                                              show_default=False)] = None,
    kind: Annotated[str | None, typer.Option("--type", "-t", help="Only this activity type.",
                                             show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many users.")] = 10,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The most active users, all time or in a period of days, optionally of one type.

    Example:
        dbcli activity top --since 7d --type purchase --limit 5
    """
    from dbcli.shop.activity import stats as activity_stats

    st = state(ctx)
    rows = activity_stats.top(st.config, since=since, until=until, kind=kind, limit=limit)
    st.output(fmt, quiet).rows(rows, activity_stats.TOP_COLUMNS, title="Most active users")
