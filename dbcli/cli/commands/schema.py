"""dbcli schema apply | status | diff | new"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dbcli.cli.options import Target, TargetOpt, exit_code_option
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.output import Output
    from dbcli.schema.apply import ApplyResult

app = typer.Typer(help="Apply and inspect the schema: PostgreSQL migrations, MongoDB collections and indexes.",
                  no_args_is_help=True)

APPLY_COLUMNS = ["target", "item", "action", "duration_ms"]
DRY_RUN_COLUMNS = ["target", "item", "action", "sql", "command"]

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the SQL and MongoDB commands that would run; "
                                          "change nothing.")]
StatusCheckOpt = Annotated[bool, exit_code_option("a migration is pending or changed, or a collection or index "
                                                  "is missing")]
DiffCheckOpt = Annotated[bool, exit_code_option("the live schema differs from the schema directory")]
MigrationNameArg = Annotated[str, typer.Argument(help="What the migration does, as part of a file name: letters, "
                                                 "digits, _ . and -.", show_default=False)]


@app.command("apply")
def apply_cmd(ctx: typer.Context, dry_run: DryRunOpt = False, target: TargetOpt = Target.all,
              fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Apply pending migrations, create missing MongoDB collections and indexes (exit 7: changed file).

    Each migration runs in its own transaction with its row in dbcli_schema_migrations; concurrent
    runs wait for each other. A second run applies nothing. A pending file with no statement
    (schema new's header alone) is refused with exit 5 before anything runs.

    Example:
        dbcli schema apply --dry-run --target postgres
    """
    from dbcli.schema import apply as schema
    from dbcli.schema.mongo_collections import VALIDATORS_NOTE

    st = state(ctx)
    out = st.output(fmt, quiet)
    result = schema.apply(st.config, target=target.value, dry_run=dry_run, notify=out.info)
    if result.validators_supported is False:
        out.info(VALIDATORS_NOTE)
    if dry_run:
        _render_dry_run(out, result)
        return
    rows = result.rows()
    if rows or out.fmt != "table":
        out.rows(rows, APPLY_COLUMNS)
    if result.changed_anything:
        out.info(f"applied {len(result.applied)} migration(s) and {len(result.mongo_changes)} MongoDB change(s)")
    else:
        out.info("nothing to apply: the schema is up to date")


def _render_dry_run(out: Output, result: ApplyResult) -> None:
    from dbcli.output import to_json

    rows = result.rows()
    if out.fmt == "table":
        # a script reads better than a table of SQL: the files as they would run, then the commands
        if not out.quiet:
            for m in result.pending:
                out.stdout.write(f"-- {m.path.name}\n{m.sql.rstrip()}\n\n")
            for c in result.mongo_changes:
                out.stdout.write(f"// mongo: {c.action} {c.detail}\n{to_json(c.command)}\n")
            out.stdout.flush()
    else:
        out.rows(rows, DRY_RUN_COLUMNS)
    if rows:
        out.info(f"dry run: {len(result.pending)} migration(s) and {len(result.mongo_changes)} MongoDB "
                 "command(s) would run; nothing was changed")
    else:
        out.info("dry run: nothing to apply, the schema is up to date")


@app.command("status")
def status_cmd(ctx: typer.Context, exit_code: StatusCheckOpt = False, target: TargetOpt = Target.all,
               fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show migrations (applied, pending, changed) and collections and indexes (present, missing).

    Example:
        dbcli schema status --exit-code || dbcli schema apply
    """
    from dbcli.errors import CheckFailedError
    from dbcli.schema import apply as schema

    st = state(ctx)
    out = st.output(fmt, quiet)
    rows = schema.status(st.config, target=target.value)
    out.rows(rows, schema.STATUS_COLUMNS)
    problems = schema.problems(rows)
    if exit_code and problems:
        raise CheckFailedError("schema is not up to date: " + ", ".join(f"{n} {s}" for s, n in problems.items()))


@app.command("diff")
def diff_cmd(ctx: typer.Context, exit_code: DiffCheckOpt = False, target: TargetOpt = Target.all,
             fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Compare the live schema with what the migrations and collection specs define (drift).

    PostgreSQL: the migrations are applied to a scratch database created on the same server
    (dbcli_diff_<epoch>_<random>, dropped at the end, on errors, Ctrl-C and SIGTERM too, and a
    killed run's by the next run; exit 3 if the role may not create databases), then tables,
    columns, constraints, indexes, views, functions, triggers, sequences, types and extensions
    are compared. MongoDB: the declared collections' indexes and validators. One row per
    difference: object, kind, expected (empty: not in the schema directory), actual (empty: missing).

    Example:
        dbcli schema diff --exit-code --target postgres
    """
    from dbcli.errors import CheckFailedError
    from dbcli.schema import diff as schema_diff
    from dbcli.schema.mongo_collections import VALIDATORS_NOTE

    st = state(ctx)
    out = st.output(fmt, quiet)
    result = schema_diff.diff(st.config, target=target.value)
    for note in result.notes:
        out.info(note)
    if result.validators_supported is False:
        out.info(VALIDATORS_NOTE + "; validators were not compared")
    if result.rows or out.fmt != "table":
        out.rows(result.rows, schema_diff.DIFF_COLUMNS, nulls=False)
    objects = result.objects()
    if not objects:
        out.info("no drift: the live schema matches the schema directory")
        return
    shown = ", ".join(objects[:5]) + (f" and {len(objects) - 5} more" if len(objects) > 5 else "")
    message = f"schema drift: {len(result.rows)} difference(s) in {shown}"
    if exit_code:
        raise CheckFailedError(message, hint="put the change in a migration (dbcli schema new NAME), or undo it")
    out.info(message)


@app.command("new")
def new_cmd(ctx: typer.Context, name: MigrationNameArg, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Write the next numbered migration file into schema.dir/postgres (never replaces a file).

    Example:
        dbcli schema new add_user_nickname
    """
    from dbcli.schema.authoring import new_migration
    from dbcli.schema.migrations import display_path

    st = state(ctx)
    out = st.output(fmt, quiet)
    created = new_migration(st.config, name)
    out.rows([{"version": created.version, "name": created.name, "path": display_path(created.path)}],
             ["version", "name", "path"])
    out.info(f"write the change into {display_path(created.path)}, then: dbcli schema apply")
