"""dbcli local status | stop"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="The embedded PostgreSQL and the local MongoDB-wire server.", no_args_is_help=True)


@app.command("status")
def status(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show the profile's local servers, then every other one dbcli started that still runs.

    Each row: state, pid, address, data dir, version, and whether it is this profile's.

    Example:
        dbcli local status
    """
    from dbcli.servers import local

    st = state(ctx)
    rows = local.status(st.config)
    out = st.output(fmt, quiet)
    out.rows(rows, local.COLUMNS)
    if any(not r["in_profile"] for r in rows):
        out.info("servers with in_profile false run on another profile's data; "
                 "`dbcli local stop --all` stops them too")


@app.command("stop")
def stop(
    ctx: typer.Context,
    everything: Annotated[bool, typer.Option("--all", help="Also stop every other local server dbcli "
                                                          "started (any profile, any data dir).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Stop the embedded PostgreSQL and the local MongoDB-wire server of this profile.

    Example:
        dbcli local stop --all
    """
    from dbcli.servers import local

    st = state(ctx)
    out = st.output(None, quiet)
    for done in local.stop(st.config, everything=everything):
        name = done.server if done.in_profile else f"{done.server} ({done.data_dir})"
        out.info(f"{name}: {'stopped' if done.was_running else 'was not running'}")
    if not everything:
        left = local.others(st.config)
        if left:
            where = ", ".join(f"{n.server} ({n.data_dir})" for n in left)
            out.info(f"still running, not this profile's: {where}; `dbcli local stop --all` stops them")
