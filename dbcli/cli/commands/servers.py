"""dbcli ping | wait"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

COLUMNS = ["server", "status", "version", "rtt_ms", "target", "error"]


def ping(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Ping every configured server: status, version and round-trip time (exit 4 if one is down).

    Example:
        dbcli ping --format json
    """
    from dbcli.errors import UnreachableError
    from dbcli.servers import health

    st = state(ctx)
    results = health.ping_all(st.config)
    st.output(fmt, quiet).rows([p.as_row() for p in results], COLUMNS, nulls=False)
    down = [p for p in results if p.status != "ok"]
    if down:
        raise UnreachableError(f"{down[0].server} is unreachable: {down[0].error}")


def wait(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Give up after this many seconds.")] = 60.0,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Wait, retrying with backoff, until every configured server answers (exit 4 on timeout).

    Example:
        dbcli wait --timeout 30 && dbcli schema apply
    """
    from dbcli.servers import health

    st = state(ctx)
    out = st.output(fmt, quiet)

    def retry(down: list[health.Ping], delay: float) -> None:
        out.info(f"waiting for {', '.join(p.server for p in down)} (retry in {delay:.1f}s)")

    results = health.wait(st.config, timeout, on_retry=retry)
    out.rows([p.as_row() for p in results], COLUMNS, nulls=False)


def register(app: typer.Typer) -> None:
    app.command("ping")(ping)
    app.command("wait")(wait)
