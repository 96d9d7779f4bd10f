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
    csv, jsonl and json of a query are streamed by the server (COPY) in PostgreSQL's forms,
    the bytes table export and psql's \\copy write.

    Example:
        dbcli sql "select count(*) as n from users" -f json
        dbcli sql "select * from products where price >= %(min)s" --param min=10
        dbcli sql --write "update products set stock = 0 where product_id = 3"
    """
    from dbcli.cli.commands.table_files import stdout_bytes
    from dbcli.errors import UsageError
    from dbcli.postgres import sql as runner
    from dbcli.postgres.sql_stream import STREAM_FORMATS
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
    # csv, jsonl and json of a read-only query stream through COPY (flat memory, no Python work per
    # row); under --quiet the rows go nowhere, errors still count
    sink = None
    if out.fmt in STREAM_FORMATS and not write:
        sink = _discard if out.quiet else stdout_bytes(out)
    result = runner.run(st.config, text, params, write=write, timeout=timeout, sink=sink, fmt=out.fmt)
    if result.written:
        # cached reports on the tables the run changed are recomputed (loaded only after a write)
        from dbcli.cache import store as cache

        cache.note_write(st.config, [f"postgres:{t}" for t in result.written])
    if result.streamed:
        out.stdout.flush()
    elif result.columns is not None:
        out.rows(result.rows, result.columns)
    else:
        out.record({"status": result.status, "rows": max(result.rowcount, 0)})


def _discard(data: bytes) -> None:
    """The sink of a --quiet run: the query runs to its end, nothing is printed."""
