"""dbcli cache stats | clear"""

from __future__ import annotations

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="The report result cache (Redis when cache.url is set, else on disk).",
                  no_args_is_help=True)


@app.command("stats")
def stats(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show the cache: backend, entries, size in bytes, hits and misses (exit 4 if unreachable).

    Example:
        dbcli cache stats --format json
    """
    from dbcli.cache import store as cache
    from dbcli.cache.backend import CacheUnavailable
    from dbcli.errors import UnreachableError

    st = state(ctx)
    try:
        result = cache.stats(st.config)
    except CacheUnavailable as e:
        raise UnreachableError(str(e)) from None
    st.output(fmt, quiet).record(result.as_record(), title="report cache")


@app.command("clear")
def clear(ctx: typer.Context, quiet: QuietOpt = False) -> None:
    """Remove every cached report result and reset the hit and miss counters (exit 4 if unreachable).

    Example:
        dbcli cache clear
    """
    from dbcli.cache import store as cache
    from dbcli.cache.backend import CacheUnavailable
    from dbcli.errors import UnreachableError

    st = state(ctx)
    try:
        removed = cache.clear(st.config)
    except CacheUnavailable as e:
        raise UnreachableError(str(e)) from None
    st.output(None, quiet).info(f"removed {removed} cached result{'s' if removed != 1 else ''}")
