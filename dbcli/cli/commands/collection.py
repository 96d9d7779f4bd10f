"""dbcli collection list | insert | find | count | update | delete | import | export | indexes

aggregate and distinct live in collection_query (registered at the end of this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli import completion
from dbcli.cli.commands import collection_query
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from rich.progress import Progress

    from dbcli.output import Output

app = typer.Typer(help="CRUD, import and export on MongoDB collections (Extended JSON).", no_args_is_help=True)

CollectionArg = Annotated[str, typer.Argument(help="Collection name.", show_default=False,
                                              autocompletion=completion.collections)]
FilterOpt = Annotated[str | None, typer.Option("--filter", help="Filter document, Extended JSON "
                      "(e.g. '{\"user_id\": 42}').", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Allow touching every document (no --filter).")]
OneOpt = Annotated[bool, typer.Option("--one", help="Touch at most one matching document.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print how many documents match; change nothing.")]


@app.command("list")
def list_(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """List the collections with their document and index counts.

    Example:
        dbcli collection list --format json
    """
    from dbcli.mongo import collections

    st = state(ctx)
    st.output(fmt, quiet).rows(collections.list_collections(st.config), collections.LIST_COLUMNS)


@app.command("insert")
def insert(
    ctx: typer.Context,
    collection: CollectionArg,
    data: Annotated[str | None, typer.Option("--data", "-d", help="One document (or a JSON array of them), "
                    "Extended JSON.", show_default=False)] = None,
    file: Annotated[str | None, typer.Option("--file", help="Documents from a file (JSON array, JSONL, "
                    "CSV); '-' for stdin.", show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Insert documents (validated against the collection's schema first) and print them with their _id.

    The collection is created if it does not exist. Without --data or --file, reads stdin.

    Example:
        dbcli collection insert notes --data '{"title": "hi", "at": {"$date": "2024-05-01T10:00:00Z"}}'
    """
    from dbcli.errors import UsageError
    from dbcli.mongo import documents, query

    st = state(ctx)
    out = st.output(fmt, quiet)
    if data is not None and file is not None:
        raise UsageError("give --data or --file, not both")
    lines: list[int] | None = None
    if data is not None:
        value = query.parse_json(data, "--data")
        docs = value if isinstance(value, list) else [value]
        if not all(isinstance(d, dict) for d in docs):
            from dbcli.errors import InvalidInputError

            raise InvalidInputError("--data: expected a JSON object or an array of objects")
    else:
        from dbcli import readers

        source = file or "-"
        if source == "-" and _stdin_is_tty():
            raise UsageError("give --data or --file, or pipe documents on stdin")
        stream = readers.open_input(source)
        try:
            records = list(readers.iter_records(stream, readers.guess_format(source, stream), extended=True))
        finally:
            if source != "-":
                stream.close()
        lines = [n for n, _ in records]
        docs = [d for _, d in records]
    query.check_name(collection)
    stored = documents.insert(st.config, collection, docs, lines=lines)
    out.rows(stored, extended=True)
    out.info(f"inserted {len(stored)} document(s) into {collection}")


@app.command("find")
def find(
    ctx: typer.Context,
    collection: CollectionArg,
    filter_: FilterOpt = None,
    projection: Annotated[str | None, typer.Option("--projection", help="Projection document "
                          "(e.g. '{\"name\": 1, \"_id\": 0}').", show_default=False)] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="Sort document (e.g. '{\"ts\": -1}').",
                    show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many documents (0: no limit).")] = 0,
    skip: Annotated[int, typer.Option("--skip", help="Skip this many documents first.")] = 0,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the documents matching a filter, as relaxed Extended JSON.

    Example:
        dbcli collection find user_activities --filter '{"user_id": 42}' --sort '{"timestamp": -1}' --limit 5
    """
    from dbcli.mongo import documents, query

    st = state(ctx)
    out = st.output(fmt, quiet)
    asked = query.Query(filter=query.parse_object(filter_, "--filter") or {},
                        projection=query.parse_object(projection, "--projection"),
                        sort=query.parse_sort(sort), limit=limit, skip=skip)
    out.rows(documents.find(st.config, collection, asked, on_done=collection_query.notices(out)), extended=True)


@app.command("count")
def count(ctx: typer.Context, collection: CollectionArg, filter_: FilterOpt = None, fmt: FormatOpt = None,
          quiet: QuietOpt = False) -> None:
    """Count the documents matching a filter (all without one).

    Example:
        dbcli collection count user_activities --filter '{"type": "login"}'
    """
    from dbcli.mongo import documents, query

    st = state(ctx)
    n = documents.count(st.config, collection, query.parse_object(filter_, "--filter"))
    st.output(fmt, quiet).record({"collection": collection, "count": n})


@app.command("update")
def update(
    ctx: typer.Context,
    collection: CollectionArg,
    update_: Annotated[str, typer.Option("--update", "-u", help="Update operators, Extended JSON "
                       "(e.g. '{\"$set\": {\"tier\": \"gold\"}}').", show_default=False)],
    filter_: FilterOpt = None,
    all_docs: AllOpt = False,
    upsert: Annotated[bool, typer.Option("--upsert", help="Insert a document when none matches.")] = False,
    one: OneOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Update matching documents with update operators (refused without --filter unless --all).

    On a collection with a declared schema, every updated document is computed and validated first;
    one violation refuses the whole update (exit 5) and nothing is written.

    Example:
        dbcli collection update user_stats --filter '{"user_id": 42}' --update '{"$inc": {"activity_count": 1}}'
    """
    from dbcli.mongo import documents, query

    st = state(ctx)
    out = st.output(fmt, quiet)
    filt = query.parse_object(filter_, "--filter")
    upd = query.parse_update(update_, "--update")
    result = documents.update(st.config, collection, filt, upd, all_docs=all_docs, upsert=upsert, one=one,
                              dry_run=dry_run)
    out.record(result.as_row("update"), extended=True)
    if dry_run:
        out.info(f"dry run: {result.matched} document(s) match; nothing changed")


@app.command("delete")
def delete(
    ctx: typer.Context,
    collection: CollectionArg,
    filter_: FilterOpt = None,
    all_docs: AllOpt = False,
    one: OneOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Delete matching documents (refused without --filter unless --all).

    Example:
        dbcli collection delete user_activities --filter '{"day": {"$lt": "2024-01-01"}}' --dry-run
    """
    from dbcli.mongo import documents, query

    st = state(ctx)
    out = st.output(fmt, quiet)
    result = documents.delete(st.config, collection, query.parse_object(filter_, "--filter"),
                              all_docs=all_docs, one=one, dry_run=dry_run)
    out.record(result.as_row("delete"))
    if dry_run:
        out.info(f"dry run: {result.matched} document(s) match; nothing deleted")


@app.command("import")
def import_(
    ctx: typer.Context,
    collection: CollectionArg,
    source: Annotated[str, typer.Argument(help="JSON array, JSONL or CSV file; '-' for stdin.",
                      show_default=False)],
    input_format: Annotated[str | None, typer.Option("--input-format", help="json, jsonl or csv "
                            "(default: from the file name, else sniffed).", show_default=False)] = None,
    upsert_key: Annotated[str | None, typer.Option("--upsert-key", help="Upsert on this field instead of "
                          "inserting (new keys inserted, the others updated by _id).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per bulk write.")] = 1000,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the valid documents and report "
                            "the invalid ones instead of refusing the whole input.")] = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Bulk-import documents, validated first; reports inserted, duplicates and rejected (with line numbers).

    Any document that violates the collection's schema refuses the whole input (exit 5, nothing
    written) unless --skip-invalid. Duplicate keys are counted, not fatal.

    Example:
        dbcli collection import user_activities events.jsonl --skip-invalid
    """
    from dbcli.errors import InvalidInputError
    from dbcli.mongo import importer

    st = state(ctx)
    out = st.output(fmt, quiet)
    with _progress(out, f"importing into {collection}") as progress:
        report = importer.import_documents(st.config, collection, source, fmt=input_format,
                                           batch_size=batch_size, upsert_key=upsert_key,
                                           skip_invalid=skip_invalid, on_progress=progress)
    out.record(report.as_row())
    if report.rejected:
        if not skip_invalid:
            raise InvalidInputError(f"{report.rejected} document(s) rejected by the server: {report.problems[0]}")
        out.warn(f"{report.rejected} document(s) skipped: {'; '.join(report.problems[:3])}")


@app.command("export")
def export(
    ctx: typer.Context,
    collection: CollectionArg,
    filter_: FilterOpt = None,
    export_format: Annotated[str | None, typer.Option("--format", "-f", help="jsonl (default), json or csv.",
                             show_default=False)] = None,
    fields: Annotated[str | None, typer.Option("--fields", help="Comma-separated fields (dotted for nested "
                      "ones); CSV columns.", show_default=False)] = None,
    canonical: Annotated[bool, typer.Option("--canonical", help="Canonical instead of relaxed Extended "
                         "JSON (keeps int/long/double apart).")] = False,
    sort: Annotated[str | None, typer.Option("--sort", help="Sort document.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many documents (0: all).")] = 0,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file (atomically) "
                      "instead of stdout.", show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Stream a collection as JSONL (relaxed or canonical Extended JSON), a JSON array or CSV.

    CSV flattens nested documents into dotted columns (--fields picks and orders them).
    --quiet silences the summary; the data is still written.

    Example:
        dbcli collection export user_activities --filter '{"day": "2024-05-01"}' -f csv --fields user_id,type,data.ip
    """
    import sys

    from dbcli.mongo import exporter, query

    st = state(ctx)
    out = st.output(None, quiet)
    chosen = export_format or (st.fmt if st.fmt in exporter.EXPORT_FORMATS else "jsonl")
    if limit < 0:
        from dbcli.errors import UsageError

        raise UsageError("--limit must not be negative")
    kwargs: dict[str, Any] = {"filter_doc": query.parse_object(filter_, "--filter"), "fmt": chosen,
                              "fields": query.parse_fields(fields), "canonical": canonical,
                              "sort": query.parse_sort(sort), "limit": limit}
    if output:
        from dbcli.fsutil import atomic_write

        with atomic_write(output, newline="") as fh:
            result = exporter.export_documents(st.config, collection, fh, **kwargs)
    else:
        result = exporter.export_documents(st.config, collection, sys.stdout, **kwargs)
    for message in result.notices:
        out.warn(message)
    if result.dropped_fields:
        shown = ", ".join(sorted(result.dropped_fields)[:5])
        out.warn(f"fields absent from the first {exporter.CSV_SAMPLE} documents were not exported: {shown} "
                 "(name them with --fields)")
    out.info(f"exported {result.documents} document(s) from {collection}" + (f" to {output}" if output else ""))


@app.command("indexes")
def indexes(
    ctx: typer.Context,
    collection: CollectionArg,
    create: Annotated[str | None, typer.Option("--create", help="Create an index on these keys "
                      "(e.g. '{\"user_id\": 1, \"ts\": -1}').", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the index --create makes.",
                    show_default=False)] = None,
    unique: Annotated[bool, typer.Option("--unique", help="With --create: a unique index.")] = False,
    drop: Annotated[str | None, typer.Option("--drop", help="Drop the index with this name.",
                    show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """List a collection's indexes (and whether the schema declares them); create or drop one.

    Example:
        dbcli collection indexes user_activities --create '{"type": 1}' --name type_1
    """
    from dbcli.errors import UsageError
    from dbcli.mongo import collections

    st = state(ctx)
    out = st.output(fmt, quiet)
    if create and drop:
        raise UsageError("give --create or --drop, not both")
    if (name or unique) and not create:
        raise UsageError("--name and --unique go with --create")
    if create:
        made = collections.create_index(st.config, collection, create, index_name=name, unique=unique)
        out.info(f"created index {made} on {collection}")
    elif drop:
        collections.drop_index(st.config, collection, drop)
        out.info(f"dropped index {drop} of {collection}")
    out.rows(collections.list_indexes(st.config, collection), collections.INDEX_COLUMNS)


def _stdin_is_tty() -> bool:
    import sys

    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


class _progress:
    """A progress counter on a TTY's stderr; a no-op callback otherwise."""

    def __init__(self, out: Output, label: str) -> None:
        self.out, self.label = out, label
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.out.stderr_tty or self.out.quiet:
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} docs"),
                       TimeElapsedColumn(), console=self.out.err_console(), transient=True)
        bar.start()
        self._bar = bar
        task = bar.add_task(self.label, total=None)
        return lambda n: bar.update(task, completed=n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


collection_query.register(app)
