"""The one output layer: table on a TTY, JSON when piped, jsonl/csv on request.

Data goes to stdout, messages to stderr. JSON keeps types: numerics as exact number text,
timestamps as ISO-8601 with zone, MongoDB documents as relaxed Extended JSON.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any

from dbcli.errors import UsageError
from dbcli.stdout import STDOUT
from dbcli.terminal_table import draw_table

FORMATS = ("table", "json", "jsonl", "csv")


def resolve_format(fmt: str | None, stream: IO[str]) -> str:
    fmt = fmt or os.environ.get("DBCLI_FORMAT") or None
    if fmt is None:
        return "table" if _isatty(stream) else "json"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return fmt


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---- JSON --------------------------------------------------------------------------------------

# The one JSON form of every command's output (and of PostgreSQL's row_to_json, which table export
# passes through): compact, no space after ',' or ':'
JSON_SEPARATORS = (",", ":")


def to_json(value: Any, *, extended: bool = False) -> str:
    """Serialise one value; ``extended`` renders BSON types as relaxed Extended JSON."""
    if extended:
        from bson import json_util

        return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS, ensure_ascii=False,
                               separators=JSON_SEPARATORS)
    try:
        text = _ENCODER.encode(value)
    except ValueError:  # NaN or Infinity: no JSON number form
        out: list[str] = []
        _encode(value, out)
        return "".join(out)
    # Decimals travel through the C encoder as marked strings and come out as exact number text
    return _DECIMAL_MARK.sub(r"\1", text) if "\\u0000D" in text else text


def _default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return f"\0D{v}\0" if v.is_finite() else str(v)
    if isinstance(v, set | frozenset):
        return list(v)
    if isinstance(v, Mapping):
        return dict(v)
    return scalar_text(v)


# PostgreSQL text cannot contain NUL, so the marker cannot collide with real data
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=JSON_SEPARATORS, allow_nan=False, default=_default)
_DECIMAL_MARK = re.compile(r'"\\u0000D([-+0-9.Ee]+)\\u0000"')


def _encode(v: Any, out: list[str]) -> None:
    """Slow path for values with NaN/Infinity: those become strings."""
    if v is None or isinstance(v, bool | str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, Decimal):
        out.append(str(v) if v.is_finite() else json.dumps(str(v)))
    elif isinstance(v, float):
        out.append(repr(v) if math.isfinite(v) else json.dumps(str(v)))
    elif isinstance(v, Mapping):
        out.append("{")
        for i, (k, item) in enumerate(v.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(k), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(v, list | tuple | set | frozenset):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        out.append(json.dumps(scalar_text(v), ensure_ascii=False))


def scalar_text(v: Any) -> str:
    """Text form of a non-JSON scalar (dates, UUIDs, bytes, BSON types...)."""
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return _interval(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, uuid.UUID):
        return str(v)
    return str(v)


def _interval(td: dt.timedelta) -> str:
    # ISO-8601 duration: what PostgreSQL's intervalstyle iso_8601 prints
    secs = td.total_seconds()
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    sec = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{sign}P{int(days)}DT{int(hours)}H{int(minutes)}M{sec}S"


def cell_text(v: Any) -> str:
    """Value as a CSV or table cell: nested values as JSON, NULL as empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | Decimal | float):
        return str(v)
    if isinstance(v, Mapping | list | tuple):
        return to_json(v, extended=_has_bson(v))
    if type(v).__module__.startswith("bson"):
        return str(v)
    return scalar_text(v)


def _has_bson(v: Any) -> bool:
    if isinstance(v, Mapping):
        return any(_has_bson(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_has_bson(x) for x in v)
    return type(v).__module__.startswith("bson")


# ---- the writer --------------------------------------------------------------------------------

class Output:
    """Where and how a command prints. Tests build one around StringIO streams."""

    def __init__(self, *, fmt: str | None = None, quiet: bool = False, no_color: bool | None = None,
                 stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.stdout: IO[str] = stdout or STDOUT  # type: ignore[assignment]
        self._watched = stdout is None  # the process's stdout: its reader can go away
        self.stderr = stderr or sys.stderr
        self.fmt = resolve_format(fmt, self.stdout)
        self.quiet = quiet
        self.no_color = bool(os.environ.get("NO_COLOR")) if no_color is None else no_color
        self.stdout_tty = _isatty(self.stdout)
        self.stderr_tty = _isatty(self.stderr)
        self._console: Any = None
        self._err_console: Any = None

    # -- consoles (rich is imported only when a table or a progress bar is drawn)
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stdout, no_color=self.no_color,
                                    force_terminal=self.stdout_tty and not self.no_color)
        return self._console

    def err_console(self) -> Any:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self.stderr, no_color=self.no_color or not self.stderr_tty,
                                        force_terminal=self.stderr_tty and not self.no_color)
        return self._err_console

    # -- messages (stderr)
    def info(self, message: str) -> None:
        """A human message; silent under --quiet."""
        if not self.quiet:
            print(message, file=self.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"Warning: {message}", file=self.stderr, flush=True)

    def cut_off(self) -> bool:
        """Whether the reader of stdout went away: writers stop pulling rows."""
        return self._watched and STDOUT.gone

    # -- data (stdout)
    def rows(self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
             title: str | None = None, extended: bool = False, nulls: bool = True) -> int:
        """Print rows in the chosen format, streaming where the format allows; returns the count.

        ``nulls``: a table shows a missing value as a dim ``null`` (database rows, where NULL and
        '' differ); False leaves the cell empty (status listings)."""
        if self.quiet:
            return sum(1 for _ in rows)
        if self.fmt == "table":
            return self._table(list(rows), columns, title, nulls)
        writer = {"json": self._json_array, "jsonl": self._jsonl, "csv": self._csv}[self.fmt]
        source = iter(rows)
        count = writer(source, columns, extended)
        if self.cut_off():
            # the reader went away: end the row source now (a server-side cursor, a transaction)
            close = getattr(source, "close", None)
            if close is not None:
                close()
        return count

    def record(self, data: Mapping[str, Any], *, title: str | None = None, extended: bool = False) -> None:
        """Print one object: key/value table on a TTY, a JSON object otherwise."""
        if self.quiet:
            return
        if self.fmt == "table":
            self._table([{"key": k, "value": _flat(v)} for k, v in data.items()], ["key", "value"], title)
        elif self.fmt in ("json", "jsonl"):
            self.stdout.write(to_json(data, extended=extended) + "\n")
        else:
            self._csv(iter([data]), list(data), extended)
        self.stdout.flush()

    def _table(self, rows: list[Mapping[str, Any]], columns: Sequence[str] | None, title: str | None,
               nulls: bool = True) -> int:
        cols = list(columns) if columns is not None else columns_of(rows)
        numeric = [bool(rows) and all(isinstance(r.get(c), int | float | Decimal) or r.get(c) is None
                                      for r in rows[:50]) for c in cols]
        cells = [[cell_text(r.get(c)) if r.get(c) is not None else None for c in cols] for r in rows]
        draw_table(self.console(), cols, cells, numeric=numeric, title=title,
                   null="[dim]null[/dim]" if nulls else "")
        if not rows:
            self.info("(no rows)")
        return len(rows)

    def _json_array(self, rows: Iterator[Mapping[str, Any]], columns: Sequence[str] | None,
                    extended: bool) -> int:
        encode, n = _row_encoder(columns, extended), 0
        chunk = ["["]
        for row in rows:
            chunk.append(",\n" if n else "\n")
            chunk.append(encode(row))
            n += 1
            if len(chunk) >= _CHUNK:
                self._write_json(chunk, extended)
                if self.cut_off():
                    return n
        chunk.append("\n]\n" if n else "]\n")
        self._write_json(chunk, extended)
        self.stdout.flush()
        return n

    def _jsonl(self, rows: Iterator[Mapping[str, Any]], columns: Sequence[str] | None, extended: bool) -> int:
        encode, n = _row_encoder(columns, extended), 0
        chunk: list[str] = []
        for row in rows:
            chunk.append(encode(row))
            chunk.append("\n")
            n += 1
            if len(chunk) >= _CHUNK:
                self._write_json(chunk, extended)
                if self.cut_off():
                    return n
        self._write_json(chunk, extended)
        self.stdout.flush()
        return n

    def _write_json(self, chunk: list[str], extended: bool) -> None:
        text = "".join(chunk)
        chunk.clear()
        # Decimals come out of the C encoder as marked strings; unmarked here, once per chunk
        # (Extended JSON has its own form for them: no marks there)
        self.stdout.write(_DECIMAL_MARK.sub(r"\1", text) if not extended and "\\u0000D" in text else text)

    def _csv(self, rows: Iterator[Mapping[str, Any]], columns: Sequence[str] | None, extended: bool) -> int:
        # the real stream, not the STDOUT wrapper (one Python call per row); a gone reader is
        # caught around the loop instead, which also stops it
        writer = csv.writer(sys.stdout if self._watched else self.stdout, lineterminator="\n")
        n = 0
        cols = list(columns) if columns is not None else None
        try:
            for row in rows:
                if cols is None:
                    cols = list(row)
                if n == 0:
                    writer.writerow(cols)
                writer.writerow([cell_text(row.get(c)) for c in cols])
                n += 1
            if n == 0 and cols:
                writer.writerow(cols)
        except BrokenPipeError:
            if not self._watched:
                raise
            STDOUT.reader_went_away()
        self.stdout.flush()
        return n


def counted(n: int, noun: str) -> str:
    """``counted(1, "row")`` -> "1 row", ``counted(2, "row")`` -> "2 rows"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in order of first appearance."""
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return list(cols)


# Rows are encoded one by one (one per line) but written in chunks of this many pieces
_CHUNK = 1024


def _row_encoder(columns: Sequence[str] | None, extended: bool) -> Callable[[Mapping[str, Any]], str]:
    """Encodes one row (restricted to ``columns``) to JSON, Decimals left marked for ``_write_json``."""
    cols = tuple(columns) if columns is not None else None
    if extended:
        return lambda row: to_json(_pick(row, cols), extended=True)

    def encode(row: Mapping[str, Any]) -> str:
        if cols is not None and not (type(row) is dict and tuple(row) == cols):
            row = _pick(row, cols)
        try:
            return _ENCODER.encode(row)
        except ValueError:  # NaN or Infinity
            out: list[str] = []
            _encode(row, out)
            return "".join(out)

    return encode


def _pick(row: Mapping[str, Any], columns: Sequence[str] | None) -> Mapping[str, Any]:
    if columns is None:
        return row
    return {c: row.get(c) for c in columns}


def _flat(v: Any) -> Any:
    return cell_text(v) if isinstance(v, Mapping | list | tuple) else v


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    Output(fmt="csv", stdout=buf)._csv(iter(rows), columns, False)
    return buf.getvalue()
