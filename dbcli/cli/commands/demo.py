"""dbcli demo"""

from __future__ import annotations

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state


def demo(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show every capability once on the embedded default: servers, schema, CRUD, reports, activity, backup.

    Example:
        dbcli demo
    """
    from dbcli.shop.demo import runner

    st = state(ctx)
    runner.run(st.config, st.output(fmt, quiet))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
