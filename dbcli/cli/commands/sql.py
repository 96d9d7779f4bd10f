"""dbcli sql QUERY | --file F | -"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state


def sql(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="The SQL text, or - to read it from stdin.",
                                                show_default=False)] = None,
    file: Annotated[str | None, typer.Option("--file", help="Read the SQL from this file (several "
                                             "statements allowed).", show_default=False)] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE bound to %(NAME)s "
                                                    "(repeatable; write a literal % as %%).",
                                                    show_default=False)] = None,
    write: Annotated[bool, typer.Option("--write", help="Allow changes: run in a normal transaction "
                                        "and commit.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="statement_timeout in seconds "
                                                  "(exit 4 when reached).", show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run SQL on the profile's PostgreSQL and print the last statement's result.

    Read-only unless --write: the statements run in one READ ONLY transaction that is rolled
    back, and a statement that writes exits 7. With --write the transaction commits and the row
    count (or the rows of a RETURNING) is printed. Ctrl-C cancels the query on the server.

    Example:
        dbcli sql "select count(*) as n from users" -f json
        dbcli sql "select * from products where price >= %(min)s" --param min=10
        dbcli sql --write "update products set stock = 0 where product_id = 3"
    """
    from dbcli.cli.commands.table_files import stdout_bytes
    from dbcli.errors import UsageError
    from dbcli.postgres import sql as runner
    from dbcli.readers import open_input

    if (query is None) == (file is None):
        raise UsageError("give the SQL as an argument, - for stdin, or --file F (one of them)")
    if file is not None or query == "-":
        stream = open_input(file or "-")
        text = stream.read()
        if file is not None:
            stream.close()
    else:
        text = str(query)
    params = runner.parse_params(param or [])
    st = state(ctx)
    out = st.output(fmt, quiet)
    # CSV of a read-only query streams through COPY (flat memory, no Python work per row)
    sink = stdout_bytes(out) if out.fmt == "csv" and not write else None
    result = runner.run(st.config, text, params, write=write, timeout=timeout, csv_sink=sink)
    if result.streamed:
        out.stdout.flush()
    elif result.columns is not None:
        out.rows(result.rows, result.columns)
    else:
        out.record({"status": result.status, "rows": max(result.rowcount, 0)})
