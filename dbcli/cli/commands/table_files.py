"""The file side of ``dbcli table import`` / ``export``: the CSV dialect options, the reject file,
the progress counter and stdout as bytes (used by dbcli.cli.commands.table)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dbcli.output import Output
    from dbcli.postgres.copy_load import ImportResult
    from dbcli.postgres.csv_options import CsvOptions

DelimiterOpt = Annotated[str | None, typer.Option(
    "--delimiter", help="CSV field separator, one character ('\\t' or tab for a tab; default ,).",
    show_default=False)]
QuoteOpt = Annotated[str | None, typer.Option("--quote", help="CSV quote character (default \").",
                                              show_default=False)]
EscapeOpt = Annotated[str | None, typer.Option(
    "--escape", help="Character that escapes a quote inside a quoted value (default: the quote, doubled).",
    show_default=False)]
NullOpt = Annotated[str | None, typer.Option(
    "--null", help="Text that stands for NULL, e.g. NA or \\N (default: an unquoted empty cell).",
    show_default=False)]
NoHeaderOpt = Annotated[bool, typer.Option("--no-header", help="The file has no header line.")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="The file's text encoding, e.g. latin1 or cp1252 (default utf-8; CSV only).",
    show_default=False)]

ImportJobsOpt = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, help="Load the file over N connections side by side (cut into parts where "
    "records end); still all rows or none (docs/tables.md).")]
ExportJobsOpt = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, help="Read the table in N block ranges side by side, in one snapshot; the same bytes "
    "as one job (not with --order-by or json).")]


def importer(jobs: int) -> Callable[..., ImportResult]:
    """The import function of ``--jobs N``: the single-job one for 1."""
    if jobs == 1:
        from dbcli.postgres.copy_import import import_file

        return import_file
    from dbcli.postgres.parallel_import import import_file_jobs

    return lambda uow, name, source, **kw: import_file_jobs(uow, name, source, jobs, **kw)


def exporter(jobs: int) -> Callable[..., int]:
    """The export function of ``--jobs N``: the single-job one for 1."""
    if jobs == 1:
        from dbcli.postgres.copy_export import export_table

        return export_table
    from dbcli.postgres.parallel_export import export_table_jobs

    return lambda uow, name, sink, **kw: export_table_jobs(uow, name, sink, jobs, **kw)


def dialect(fmt: str, *, delimiter: str | None, quote: str | None, escape: str | None, null: str | None,
            no_header: bool, encoding: str | None) -> CsvOptions:
    """The CSV dialect of the options (a usage error for one that makes no sense with ``fmt``)."""
    from dbcli.postgres.csv_options import csv_options

    return csv_options(fmt=fmt, delimiter=delimiter, quote=quote, escape=escape, null=null,
                       header=not no_header, encoding=encoding)


def input_format(source: str, given: str | None) -> str | None:
    """The --input-format, with tsv recognised from the option or the file suffix."""
    if given is not None:
        return given.lower()
    return "tsv" if source != "-" and Path(source).suffix.lower() == ".tsv" else None


def reject_path(kind: str | None, source: str, table: str, columns: str | None, skip_bad: int | None,
                given: str | None) -> str:
    """Where --skip-bad writes the lines it set aside: --reject-file, else SOURCE.rejects (TABLE.rejects
    in the current directory for stdin); a usage error for the options that make no sense together."""
    from dbcli.errors import UsageError

    if given is not None and skip_bad is None:
        raise UsageError("--reject-file needs --skip-bad N")
    if kind in ("json", "jsonl", "ndjson") and (columns or skip_bad is not None):
        raise UsageError(f"{'--columns' if columns else '--skip-bad'} applies to csv and tsv only, not {kind}")
    if given:
        return given
    return f"{table}.rejects" if source == "-" else f"{source}.rejects"


def rejected_note(result: ImportResult, path: str) -> str:
    """The summary's words on the lines --skip-bad set aside."""
    if result.rejected is None:
        return ""
    n = len(result.rejected)
    return f", {n} bad line(s) skipped" + (f" (in {path})" if n else "")


def write_rejects(out: Output, result: ImportResult, path: str, encoding: str) -> None:
    """The lines set aside, written atomically once the import has committed (no file if none), in
    the input's encoding: byte for byte what the input held."""
    from dbcli.fsutil import atomic_write

    rejected = result.rejected
    if rejected is None or not len(rejected):
        return
    with atomic_write(path, encoding=encoding, newline="") as fh:
        fh.write(rejected.text())
    for reason in rejected.reasons[:5]:
        out.warn(f"skipped {reason}")
    if len(rejected) > 5:
        out.warn(f"... and {len(rejected) - 5} more")


@contextmanager
def progress(out: Output, table: str) -> Iterator[Any]:
    """A row counter on stderr when it is a terminal; nothing otherwise."""
    if out.quiet or not out.stderr_tty:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("importing into {task.fields[table]}: {task.completed:,} rows"),
                  TimeElapsedColumn(), console=out.err_console(), transient=True) as bar:
        task = bar.add_task("import", total=None, table=table)
        yield lambda n: bar.update(task, completed=n)


def stdout_bytes(out: Output) -> IO[bytes]:
    """stdout as a byte stream (a text-only stream, as in tests, gets decoded writes)."""
    stream = out.stdout
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)  # type: ignore[return-value]


class _TextSink:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, data: bytes | memoryview) -> int:
        return self.stream.write(bytes(data).decode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()
