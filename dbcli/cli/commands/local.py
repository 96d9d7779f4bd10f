"""dbcli local status | stop"""

from __future__ import annotations

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="The embedded PostgreSQL and the local MongoDB-wire server.", no_args_is_help=True)


@app.command("status")
def status(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show what local servers run, where, their pid, data dir and version.

    Example:
        dbcli local status
    """
    from dbcli.servers import local

    st = state(ctx)
    rows = local.status(st.config)
    st.output(fmt, quiet).rows(rows, ["server", "state", "pid", "address", "data_dir", "version"])


@app.command("stop")
def stop(ctx: typer.Context, quiet: QuietOpt = False) -> None:
    """Stop the embedded PostgreSQL and the local MongoDB-wire server of this profile.

    Example:
        dbcli local stop
    """
    from dbcli.servers import local

    st = state(ctx)
    out = st.output(None, quiet)
    for name, stopped in local.stop(st.config):
        out.info(f"{name}: {'stopped' if stopped else 'was not running'}")
