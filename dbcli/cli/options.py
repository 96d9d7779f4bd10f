"""Options and arguments that several commands of a group define alike, as Annotated aliases: one
definition and one help text each (the output options every command shares are in ``state.py``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from dbcli.cli import completion


class Target(StrEnum):
    postgres = "postgres"
    mongo = "mongo"
    all = "all"


TargetOpt = Annotated[Target, typer.Option("--target", "-t", help="Which server to work on (mongo only when "
                                           "one is configured).", case_sensitive=False)]


def exit_code_option(when: str) -> Any:
    """``--exit-code`` of a check: exit 8 ``when`` the check finds something, the form CI gates use."""
    return typer.Option("--exit-code", help=f"Exit 8 when {when} (for CI gates).")


ReportNameArg = Annotated[str, typer.Argument(help="Report name (see dbcli report list).", show_default=False,
                                              autocompletion=completion.reports)]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-P", help="A parameter as KEY=VALUE; repeat "
                     "for several. Dates take YYYY-MM-DD, today or today-7d.", show_default=False)]

# the two arguments PostgreSQL gives archive_command and restore_command
WalPathArg = Annotated[str, typer.Argument(help="The path the server gives (%p): the WAL file to archive, or "
                                           "where to put the fetched one.", show_default=False)]
WalNameArg = Annotated[str, typer.Argument(help="The WAL file's name (%f).", show_default=False)]
