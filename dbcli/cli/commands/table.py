"""dbcli table list | describe | get | find | count | insert | update | delete | import | export"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli import completion
from dbcli.cli.commands import table_files as files
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.output import Output
    from dbcli.postgres.tables import Filter
    from dbcli.postgres.uow import UnitOfWork

app = typer.Typer(help="CRUD, import and export on any PostgreSQL table.", no_args_is_help=True)

TableArg = Annotated[str, typer.Argument(help="Table name (or schema.table).", show_default=False,
                                         autocompletion=completion.tables)]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help="Condition COL=V, COL!=V, COL<V, <=, >, >=, COL~PATTERN (ILIKE), 'COL is null', "
    "'COL is not null'. Repeat to AND them.", show_default=False)]
ColumnsOpt = Annotated[str | None, typer.Option("--columns", help="Comma-separated columns to show.",
                                                show_default=False)]
OrderOpt = Annotated[list[str] | None, typer.Option("--order-by", help="COL or COL:desc; repeatable.",
                                                    show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Allow touching every row (no --where).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print how many rows would change; change nothing.")]


def _filters(where: list[str] | None) -> list[Filter]:
    from dbcli.postgres.tables import parse_where

    return [parse_where(w) for w in where or []]


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@contextmanager
def _unit(ctx: typer.Context, out: Output) -> Iterator[UnitOfWork]:
    from dbcli.postgres.uow import UnitOfWork

    with UnitOfWork(state(ctx).config) as uow:
        yield uow
    for message in uow.encryptor.notices() if uow.encryptor is not None else []:
        out.warn(message)


@app.command("list")
def list_(
    ctx: typer.Context,
    schema: Annotated[str | None, typer.Option("--schema", help="Only this schema (default: the search path).",
                                               show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """List the tables and views with estimated row counts and sizes.

    Example:
        dbcli table list --format json
    """
    from dbcli.postgres.catalog import list_tables

    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        rows = list_tables(uow.conn, schema)
    out.rows(rows, ["schema", "name", "kind", "rows_estimate", "size_bytes"])


@app.command("describe")
def describe(ctx: typer.Context, table: TableArg, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show a table's columns: type, nullability, default, keys, identity and encryption.

    Example:
        dbcli table describe orders
    """
    from dbcli.postgres.catalog import unique_keys

    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        keys = unique_keys(uow.conn, gw.table) if gw.table.relkind in ("r", "p", "m") else []
    rows = []
    for col in gw.table.columns.values():
        key = ["PK" if k.primary else f"UQ {k.name}" for k in keys if col.name in k.columns]
        rows.append({"column": col.name, "type": col.data_type, "nullable": not col.not_null,
                     "default": col.default, "key": ", ".join(key) or None,
                     "identity": {"a": "always", "d": "by default"}.get(col.identity)
                     or ("generated" if col.generated else None),
                     "encrypted": col.name in gw.encrypted})
    out.rows(rows, ["column", "type", "nullable", "default", "key", "identity", "encrypted"],
             title=f"{gw.table.display} ({gw.table.kind})")


@app.command("get")
def get(
    ctx: typer.Context,
    table: TableArg,
    key: Annotated[str, typer.Argument(help="Primary-key value; a composite key as comma-separated values "
                                       "in key order (order_items: ORDER_ID,PRODUCT_ID).", show_default=False)],
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print one row by primary key (exit 6 if there is none).

    Example:
        dbcli table get users 1
        dbcli table get order_items 5,7
    """
    from dbcli.errors import NotFoundError

    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        row = gw.get(key)
    if row is None:
        raise NotFoundError(f"no row of {gw.table.display} with {','.join(gw.table.primary_key)} = {key}")
    out.record(row)


@app.command("find")
def find(
    ctx: typer.Context,
    table: TableArg,
    where: WhereOpt = None,
    order_by: OrderOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most this many rows.",
                                              show_default=False)] = None,
    columns: ColumnsOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the rows matching every --where condition (streamed: any result size).

    Example:
        dbcli table find products --where 'price>=10' --where 'product_name~%lamp%' --order-by price:desc --limit 5
    """
    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        names, rows = uow.table(table).find(_filters(where), order_by=order_by or [], limit=limit,
                                            columns=_columns(columns))
        out.rows(rows, names)


@app.command("count")
def count(ctx: typer.Context, table: TableArg, where: WhereOpt = None, fmt: FormatOpt = None,
          quiet: QuietOpt = False) -> None:
    """Count the rows matching every --where condition, exactly (all rows without one).

    Example:
        dbcli table count orders --where status=paid
    """
    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        n = gw.count(_filters(where))
    out.record({"table": gw.table.display, "count": n})


@app.command("insert")
def insert(
    ctx: typer.Context,
    table: TableArg,
    data: Annotated[str | None, typer.Option("--data", "-d", help="One row as a JSON object (or a JSON array of "
                    "rows).", show_default=False)] = None,
    file: Annotated[str | None, typer.Option("--file", help="Rows from a file: JSON array, JSONL or CSV; '-' "
                    "for stdin.", show_default=False)] = None,
    input_format: Annotated[str | None, typer.Option("--input-format", help="json, jsonl or csv (default: from "
                            "the file suffix or the content).", show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Insert rows (missing columns take their defaults) and print them as stored.

    All rows or none. Without --data or --file, rows are read from stdin.

    Example:
        dbcli table insert products --data '{"sku": "LAMP-1", "product_name": "Lamp", "price": 19.90}'
    """
    from dbcli.errors import UsageError

    out = state(ctx).output(fmt, quiet)
    if data is not None and file is not None:
        raise UsageError("give --data or --file, not both")
    if data is None and file is None and sys.stdin.isatty():
        raise UsageError("give --data JSON, --file FILE, or rows on stdin")
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        if data is not None:
            stored = gw.insert(enumerate(_data_rows(data), start=1))
        else:
            from dbcli.postgres.copy_import import read_records

            with read_records(file or "-", input_format) as (kind, records):
                stored = gw.insert(list(records), typed=kind != "csv", csv=kind == "csv")
    out.rows(stored, list(gw.table.columns))
    out.info(f"inserted {len(stored)} row(s) into {gw.table.display}")


def _data_rows(data: str) -> list[dict[str, Any]]:
    import json

    from dbcli.errors import InvalidInputError

    try:
        value = json.loads(data)
    except ValueError as e:
        raise InvalidInputError(f"--data: invalid JSON ({str(e).splitlines()[0][:100]})") from None
    rows = value if isinstance(value, list) else [value]
    if not all(isinstance(r, dict) for r in rows):
        raise InvalidInputError("--data: expected a JSON object or an array of objects")
    return rows


@app.command("update")
def update(
    ctx: typer.Context,
    table: TableArg,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="COL=VALUE to assign; repeatable.",
                                                   show_default=False)] = None,
    set_null: Annotated[list[str] | None, typer.Option("--set-null", help="Column to set to NULL; repeatable.",
                                                       show_default=False)] = None,
    where: WhereOpt = None,
    all_rows: AllOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Update the rows matching --where (refused without --where unless --all: exit 7).

    Example:
        dbcli table update products --where sku=LAMP-1 --set price=17.50 --set stock=40
    """
    from dbcli.postgres.tables import parse_assignment

    out = state(ctx).output(fmt, quiet)
    changes: dict[str, Any] = dict(parse_assignment(s) for s in set_ or [])
    changes.update({c.strip(): None for c in set_null or []})
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        count = gw.update(_filters(where), changes, all_rows=all_rows, dry_run=dry_run)
    _report(out, gw.table.display, "update", count, dry_run)


@app.command("delete")
def delete(
    ctx: typer.Context,
    table: TableArg,
    where: WhereOpt = None,
    all_rows: AllOpt = False,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Delete the rows matching --where (refused without --where unless --all; FK violations: exit 7).

    Example:
        dbcli table delete products --where sku=LAMP-1 --dry-run
    """
    out = state(ctx).output(fmt, quiet)
    with _unit(ctx, out) as uow:
        gw = uow.table(table)
        count = gw.delete(_filters(where), all_rows=all_rows, dry_run=dry_run)
    _report(out, gw.table.display, "delete", count, dry_run)


def _report(out: Output, table: str, verb: str, count: int, dry_run: bool) -> None:
    past = f"{verb}d"
    if dry_run:
        out.record({"table": table, f"would_{verb}": count, "dry_run": True})
        out.info(f"dry run: {count} row(s) of {table} would be {past}; nothing changed")
    else:
        out.record({"table": table, past: count})
        out.info(f"{past} {count} row(s) of {table}")


@app.command("import")
def import_(
    ctx: typer.Context,
    table: TableArg,
    source: Annotated[str, typer.Argument(help="CSV, JSON array or JSONL file; '-' for stdin.", show_default=False)],
    input_format: Annotated[str | None, typer.Option("--input-format", help="json, jsonl, csv or tsv (default: "
                            "from the file suffix or the content).", show_default=False)] = None,
    upsert: Annotated[bool, typer.Option("--upsert", help="Update rows whose key exists (ON CONFLICT) instead "
                      "of failing.")] = False,
    conflict_key: Annotated[str | None, typer.Option("--conflict-key", help="With --upsert: a unique constraint "
                            "or index name, or its columns (default: the primary key).",
                            show_default=False)] = None,
    delimiter: files.DelimiterOpt = None,
    quote: files.QuoteOpt = None,
    escape: files.EscapeOpt = None,
    null: files.NullOpt = None,
    no_header: files.NoHeaderOpt = False,
    columns: Annotated[str | None, typer.Option("--columns", help="The file's columns in order, comma-separated "
                       "(its header line, if any, is skipped; default: the header, or with --no-header the "
                       "table's columns).", show_default=False)] = None,
    encoding: files.EncodingOpt = None,
    skip_bad: Annotated[int | None, typer.Option("--skip-bad", min=0, help="Load the good lines and set aside up "
                        "to N bad ones (unreadable, wrong field count, a value its column refuses) in the "
                        "reject file; more fail the import.", show_default=False)] = None,
    reject_file: Annotated[str | None, typer.Option("--reject-file", help="With --skip-bad: where the bad lines "
                           "go, verbatim after the header (default: SOURCE.rejects).", show_default=False)] = None,
    jobs: files.ImportJobsOpt = 1,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Bulk-load rows through COPY in one transaction: all rows or none, counts printed.

    A bad value exits 5 naming its line and column, and nothing is stored. The CSV options are
    COPY's (--null NA, --delimiter ';', --no-header --columns a,b,c, --encoding latin1, ...);
    with --skip-bad N the good lines load and the bad ones go to the reject file.

    Example:
        dbcli table import products products.csv --upsert --conflict-key products_sku_key
        dbcli table import flights flights.csv --null NA
    """
    import_file = files.importer(jobs)
    out = state(ctx).output(fmt, quiet)
    kind = files.input_format(source, input_format)
    options = files.dialect(kind or "csv", delimiter=delimiter, quote=quote, escape=escape, null=null,
                            no_header=no_header, encoding=encoding)
    rejects = files.reject_path(kind, source, table, columns, skip_bad, reject_file)
    with _unit(ctx, out) as uow, files.progress(out, table) as progress:
        result = import_file(uow, table, source, fmt=kind, upsert=upsert, conflict_key=conflict_key,
                             progress=progress, options=options, columns=_columns(columns), skip_bad=skip_bad)
    files.write_rejects(out, result, rejects, options.encoding)
    out.record(result.as_row())
    extra = f", {result.updated} updated, {result.unchanged} unchanged" if upsert else ""
    out.info(f"imported {result.rows} row(s) into {result.table}: {result.inserted} inserted{extra}"
             + files.rejected_note(result, rejects))


@app.command("export")
def export(
    ctx: typer.Context,
    table: TableArg,
    where: WhereOpt = None,
    columns: ColumnsOpt = None,
    order_by: OrderOpt = None,
    file_format: Annotated[str | None, typer.Option("--format", "-f", help="csv, tsv, jsonl or json (default: "
                           "from the -o suffix, else csv).", show_default=False)] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file atomically "
                      "(default: stdout).", show_default=False)] = None,
    delimiter: files.DelimiterOpt = None,
    quote: files.QuoteOpt = None,
    escape: files.EscapeOpt = None,
    null: files.NullOpt = None,
    no_header: files.NoHeaderOpt = False,
    encoding: files.EncodingOpt = None,
    jobs: files.ExportJobsOpt = 1,
    quiet: QuietOpt = False,
) -> None:
    """Stream rows out through COPY (memory stays flat for any table size).

    CSV goes from the server to the file untouched; the CSV options are COPY's (--null,
    --delimiter, --no-header, --encoding, ...).

    Example:
        dbcli table export orders --where status=paid --format jsonl -o paid.jsonl
        dbcli table export products --format tsv --null NULL -o products.tsv
    """
    from pathlib import Path

    from dbcli.errors import UsageError
    from dbcli.fsutil import atomic_write
    from dbcli.postgres.copy_export import EXPORT_FORMATS

    export_table = files.exporter(jobs)

    out = state(ctx).output(None, quiet)
    known = (*EXPORT_FORMATS, "tsv")
    fmt = (file_format or "").lower() or None
    if fmt is None and output:
        suffix = Path(output).suffix.lower().lstrip(".")
        fmt = {"ndjson": "jsonl"}.get(suffix, suffix) if suffix in (*known, "ndjson") else None
    fmt = fmt or "csv"
    if fmt not in known:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(known)})")
    options = files.dialect(fmt, delimiter=delimiter, quote=quote, escape=escape, null=null,
                            no_header=no_header, encoding=encoding)
    fmt = "csv" if fmt == "tsv" else fmt
    with _unit(ctx, out) as uow:
        if output:
            with atomic_write(output, "wb") as sink:
                count = export_table(uow, table, sink, fmt=fmt, filters=_filters(where), columns=_columns(columns),
                                     order_by=order_by or [], options=options)
        else:
            sink = files.stdout_bytes(out)
            count = export_table(uow, table, sink, fmt=fmt, filters=_filters(where), columns=_columns(columns),
                                 order_by=order_by or [], options=options)
            sink.flush()
    out.info(f"exported {count} row(s) of {table}" + (f" to {output}" if output else ""))
