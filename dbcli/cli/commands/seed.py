"""dbcli seed"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.output import Output

PHASES = {"users": "users, profiles, addresses", "catalog": "categories, products", "orders": "orders, items, payments",
          "events": "activity events"}


def seed(
    ctx: typer.Context,
    users: Annotated[int, typer.Option("--users", help="Users (each with addresses, most with a profile).")] = 1000,
    products: Annotated[int, typer.Option("--products", help="Products, spread over a fixed category tree.")] = 200,
    orders: Annotated[int, typer.Option("--orders", help="Orders, each with 1-5 items and its payments.")] = 5000,
    events: Annotated[int | None, typer.Option("--events", help="Activity events in MongoDB (default 10000 when a "
                                               "MongoDB is configured, else 0).", show_default=False)] = None,
    seed_value: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same data.")] = 1,
    base_date: Annotated[str | None, typer.Option("--base-date", help="End of the data's time span, as "
                                                  "YYYY-MM-DD (default: today, UTC). The same seed and base "
                                                  "date give the same data.", show_default=False)] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Empty the shop's tables and activity collections "
                                        "first (asks on a terminal; needs --yes otherwise).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --reset: empty without asking.")] = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fill an empty schema with deterministic sample data (exit 7 if it already holds data; see --reset).

    PostgreSQL is loaded with COPY in one transaction; events go to MongoDB with bulk inserts,
    together with the user_stats and activity_buckets they imply.

    Example:
        dbcli seed --users 1000 --orders 100000 --seed 1
        dbcli seed --reset --yes --base-date 2025-01-01
    """
    from dbcli.shop.seed import load as seeding

    st = state(ctx)
    out = st.output(fmt, quiet)
    base = _parse_date(base_date) if base_date else None
    if reset and not yes:
        _confirm_reset()
    with _progress_bar(out) as progress:
        counts = seeding.seed(st.config, users=users, products=products, orders=orders, events=events,
                              seed=seed_value, base_date=base, progress=progress, reset=reset)
    out.rows(seeding.summary_rows(counts), seeding.SUMMARY_COLUMNS)
    out.info(f"seeded {sum(counts.values())} rows and documents (seed {seed_value})")


def _confirm_reset() -> None:
    """Ask on a terminal; a script (stdin not a terminal) must say --yes (exit 7 otherwise)."""
    import sys

    from dbcli.errors import ConflictError

    what = "every row of the shop's tables (users, orders, products, ...) and its activity collections"
    if not sys.stdin.isatty():
        raise ConflictError(f"seed --reset deletes {what}: refused without --yes when stdin is not a terminal",
                            hint="add --yes to confirm")
    if not typer.confirm(f"seed --reset deletes {what}. Continue?", default=False, err=True):
        raise ConflictError("seed --reset: not confirmed, nothing changed")


def _parse_date(text: str) -> dt.datetime:
    from dbcli.errors import UsageError

    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--base-date must look like 2025-01-01, got {text!r}") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@contextmanager
def _progress_bar(out: Output) -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal and not --quiet; otherwise None."""
    if out.quiet or not out.stderr_tty:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=out.err_console(), transient=True)
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total)
        bar.update(tasks[phase], completed=done)

    with bar:
        yield update
