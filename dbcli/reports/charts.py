"""Horizontal bar charts in the terminal: one numeric column, one bar per row, eighth-block precision."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dbcli.errors import InvalidInputError
from dbcli.output import Output, cell_text, counted

_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
MAX_BARS = 50  # a chart is for looking at; past this, the table is the better view


@dataclass(frozen=True)
class Bar:
    label: str
    value: str
    cells: str  # the bar itself


def numeric(value: Any, column: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"--chart column {column!r} is not numeric (it holds true/false)")
    if isinstance(value, int | float | Decimal):
        return float(value)
    if type(value).__name__ in ("Decimal128", "Int64"):  # BSON numbers from MongoDB
        return float(str(value))
    raise InvalidInputError(f"--chart column {column!r} is not numeric (it holds {type(value).__name__} values)")


def label_column(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], value_col: str,
                 label_col: str | None = None) -> str:
    """The column labelling the bars: ``label_col`` when given, else the first text column."""
    if value_col not in columns:
        raise InvalidInputError(f"--chart: no column {value_col!r} (columns: {', '.join(columns)})")
    if label_col is None:
        # a name reads better than an id: prefer the first text column
        others = [c for c in columns if c != value_col]
        texty = [c for c in others if any(isinstance(r.get(c), str) for r in rows[:20])]
        return (texty or others or [value_col])[0]
    if label_col not in columns:
        raise InvalidInputError(f"--chart-label: no column {label_col!r} (columns: {', '.join(columns)})")
    return label_col


def bars(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], value_col: str,
         label_col: str | None = None, *, width: int = 80) -> tuple[list[Bar], int]:
    """The bars to draw and how many rows were left out (past :data:`MAX_BARS`)."""
    label_col = label_column(rows, columns, value_col, label_col)
    values = [numeric(r.get(value_col), value_col) for r in rows]
    shown = list(zip(rows, values, strict=True))[:MAX_BARS]
    labels = [_clip(cell_text(r.get(label_col)) if r.get(label_col) is not None else "null", 30) for r, _ in shown]
    texts = [cell_text(r.get(value_col)) if v is not None else "null" for r, v in shown]
    label_w = max((len(s) for s in labels), default=0)
    value_w = max((len(s) for s in texts), default=0)
    room = max(10, width - label_w - value_w - 4)
    top = max((abs(v) for _, v in shown if v is not None), default=0.0)
    out = []
    for label, text, (_, v) in zip(labels, texts, shown, strict=True):
        cells = _bar(abs(v) / top * room if v is not None and top else 0.0)
        out.append(Bar(label.ljust(label_w), text.rjust(value_w), cells))
    return out, max(0, len(rows) - MAX_BARS)


def _bar(length: float) -> str:
    whole = int(length)
    eighths = round((length - whole) * 8)
    if eighths == 8:
        whole, eighths = whole + 1, 0
    return _FULL * whole + (_EIGHTHS[eighths] if eighths else "")


def _clip(text: str, n: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def render(out: Output, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], value_col: str,
           label_col: str | None = None, *, to_stderr: bool = False, title: str | None = None) -> None:
    """Draw through an :class:`dbcli.output.Output`: rich colour on a terminal, plain blocks otherwise."""
    stream = out.stderr if to_stderr else out.stdout
    tty = out.stderr_tty if to_stderr else out.stdout_tty
    width = shutil.get_terminal_size((80, 24)).columns if tty else 80
    drawn, left_out = bars(rows, columns, value_col, label_col, width=width)
    colour = tty and not out.no_color
    if title:
        stream.write(f"{title}\n")
    if colour:
        console = out.err_console() if to_stderr else out.console()
        from rich.text import Text  # rich (~15 ms) is loaded only to draw in colour, as Output.console() does

        for b in drawn:
            line = Text(f"{b.label}  {b.value}  ")
            line.append(b.cells, style="cyan")
            console.print(line, soft_wrap=True)
    else:
        for b in drawn:
            stream.write(f"{b.label}  {b.value}  {b.cells}".rstrip() + "\n")
    if left_out:
        stream.write(f"({counted(left_out, 'more row')} not charted)\n")
    stream.flush()
