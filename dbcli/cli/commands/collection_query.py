"""dbcli collection aggregate | distinct (registered by dbcli.cli.commands.collection)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli import completion
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.encryption.fields import Encryptor
    from dbcli.output import Output


def notices(out: Output) -> Any:
    """A callback that prints the encryption notices (such as a key rotation due) once a stream ends."""
    def show(enc: Encryptor | None) -> None:
        for message in enc.notices() if enc is not None else []:
            out.warn(message)
    return show


def aggregate(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="Collection name.", show_default=False,
                                              autocompletion=completion.collections)],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline: a JSON array of stages, "
                        "Extended JSON, or @FILE to read it from a file.", show_default=False)],
    write: Annotated[bool, typer.Option("--write", help="Allow $out and $merge (stages that write to a "
                     "collection).")] = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run an aggregation pipeline and print its output documents, as relaxed Extended JSON.

    $out and $merge are refused without --write (exit 7); $function, $where and $accumulator are
    always refused (exit 5: they run JavaScript on the server), in nested pipelines too.

    Example:
        dbcli collection aggregate user_activities --pipeline '[{"$group": {"_id": "$type", "n": {"$sum": 1}}}]'
    """
    from dbcli.mongo import aggregate as agg

    st = state(ctx)
    out = st.output(fmt, quiet)
    stages = agg.read_pipeline(pipeline)
    out.rows(agg.aggregate(st.config, collection, stages, write=write, on_done=notices(out)), extended=True)


def distinct(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="Collection name.", show_default=False,
                                              autocompletion=completion.collections)],
    field: Annotated[str, typer.Argument(help="Field (dotted for a nested one).", show_default=False)],
    filter_: Annotated[str | None, typer.Option("--filter", help="Only documents matching this filter, "
                       "Extended JSON.", show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the distinct values of a field, one row each (column value), as relaxed Extended JSON.

    Example:
        dbcli collection distinct user_activities type --filter '{"user_id": 42}'
    """
    from dbcli.mongo import aggregate as agg
    from dbcli.mongo import query

    st = state(ctx)
    rows = agg.distinct(st.config, collection, field, query.parse_object(filter_, "--filter"))
    st.output(fmt, quiet).rows(rows, ["value"], extended=True)


def register(app: typer.Typer) -> None:
    app.command("aggregate")(aggregate)
    app.command("distinct")(distinct)
