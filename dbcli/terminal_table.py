"""Tables drawn on a terminal: column widths in which no header breaks mid-word.

rich shrinks the widest columns of a table wider than the terminal and then breaks their headers
wherever the width falls ("order_dat" / "e"). Here each column keeps at least its header's width
(or, when the headers alone do not fit, the width of the header's longest ``_``-separated part,
the header wrapped at its underscores), and the cells fold in what is left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# "order_date" -> "order_", "date": a header may break after an underscore, nowhere else
_PARTS = re.compile(r"[^_]*_+|[^_]+")


def draw_table(console: Any, headers: Sequence[str], cells: Sequence[Sequence[str | None]], *,
               numeric: Sequence[bool], title: str | None, null: str) -> None:
    """Print ``cells`` (None: a missing value, shown as ``null`` markup) under ``headers``."""
    # rich (~15 ms) is loaded only when a table is drawn
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    measured = [["null" if t is None else t for t in row] for row in cells]
    widths, labels = fitted_widths(headers, measured, console.width)
    table = Table(title=title, show_lines=False, header_style="bold")
    for i, label in enumerate(labels):
        table.add_column(Text(label, no_wrap=True, overflow="ellipsis"), justify="right" if numeric[i] else "left",
                         overflow="fold", width=widths[i] if widths else None)
    for row in cells:
        table.add_row(*[null if t is None else escape(t) for t in row])
    console.print(table)


def fitted_widths(headers: Sequence[str], cells: Sequence[Sequence[str]],
                  total: int) -> tuple[list[int] | None, list[str]]:
    """(column widths, header labels) for a table ``total`` cells wide; the widths are None when
    the natural ones fit (or not even the headers' parts do: then headers are cut with an ellipsis)."""
    natural = [max([_width(h), *(_width(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    room = total - 3 * len(headers) - 1  # rich's default box: "│ " + " │" per column, shared edges
    if sum(natural) <= room:
        return None, list(headers)
    floor = [_width(h) for h in headers]
    parts = [max(_width(p) for p in _PARTS.findall(h) or [h]) for h in headers]
    while sum(floor) > room:  # headers wrapped at their underscores, the widest first
        i = max(range(len(floor)), key=lambda i: floor[i] if floor[i] > parts[i] else -1)
        if floor[i] <= parts[i]:
            return None, list(headers)
        floor[i] = parts[i]
    # the narrow columns keep their width, the widest are cut down to a common cap and fold
    cap = max(natural)
    while sum(max(f, min(n, cap)) for f, n in zip(floor, natural, strict=True)) > room:
        cap -= 1
    widths = [max(f, min(n, cap)) for f, n in zip(floor, natural, strict=True)]
    for i in range(len(widths)):  # the rounding remainder, one cell each to the capped columns
        if sum(widths) < room and natural[i] > widths[i]:
            widths[i] += 1
    return widths, [_wrapped(h, w) for h, w in zip(headers, widths, strict=True)]


def _width(text: str) -> int:
    from rich.cells import cell_len  # rich only when a table is drawn, as above

    return max((cell_len(line) for line in text.split("\n")), default=0)


def _wrapped(header: str, width: int) -> str:
    """``header`` in lines of at most ``width``, broken only after underscores."""
    if _width(header) <= width:
        return header
    lines = [""]
    for part in _PARTS.findall(header):
        if lines[-1] and _width(lines[-1] + part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)
