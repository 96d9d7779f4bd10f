"""A CSV stream cut into batches of whole records for COPY, and COPY's line numbers traced back.

A batch is about a quarter MiB of the file's lines, never ending inside a quoted field. A batch
without blank lines goes to COPY as it is; the first one COPY reads, and those with blank lines
(skipped, as the csv module skips them), are walked record by record. :class:`LineMap` turns the
line number COPY names in an error back into the source line: COPY counts a record as one line
plus the line breaks inside its quoted fields (so the lines of a batch sent as it is are its own),
except in the very first record it reads (it learns the file's line-break style only at that
record's end), and it never sees the header or the blank lines the import leaves out.
"""

from __future__ import annotations

import bisect
import csv
from array import array
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

from dbcli.errors import InvalidInputError


class Batch(NamedTuple):
    """What goes to COPY for a batch, and where each of its records came from."""

    rows: int  # records; where ends is None, lines (then each is one record, or COPY counts it as one)
    text: str
    ends: list[int] | None = None  # the line each record ends on; None: COPY's line i is line first + i
    spans: list[int] | None = None  # with ends: how many lines each record takes


def csv_batches(stream: IO[str], quote: str, size: int) -> Iterator[tuple[int, list[str], str]]:
    """(first line number, lines, their text) of whole CSV records, about ``size`` characters each."""
    line_no = 1
    while True:
        chunk = stream.readlines(size)
        if not chunk:
            return
        text = "".join(chunk)
        # an odd number of quote characters means a quoted field runs on: read to its end
        if text.count(quote) % 2:
            quotes = 1
            while quotes % 2:
                more = stream.readline()
                if not more:
                    break  # unterminated: the parser reports it
                chunk.append(more)
                quotes += more.count(quote)
            text = "".join(chunk)
        yield line_no, chunk, text
        line_no += len(chunk)


def has_blank_line(chunk: list[str]) -> bool:
    """Whether a line is empty (the csv module skips those; COPY would read a record). List
    membership: compares the lines' lengths, in C."""
    return "\n" in chunk or "\r\n" in chunk or "\r" in chunk


def csv_header(batch: tuple[int, list[str]], dialect: dict[str, Any]) -> tuple[list[str], int]:
    """The header's names and the line number where the data starts."""
    lines = iter(batch[1])
    reader = csv.reader(lines, **dialect)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        raise InvalidInputError(f"line 1: invalid CSV header ({e or 'empty'})") from None
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
    return header, 1 + reader.line_num


def batch_text(chunk: list[str]) -> str:
    """The lines as COPY gets them: a last line without its line break gets one (a CR-only file's
    last line ends in \r already, and COPY takes one line-break style per file)."""
    text = "".join(chunk)
    return line_ended(text)


def line_ended(text: str) -> str:
    """``text`` with a line break at its end, unless it is empty or has one."""
    return text if not text or text.endswith(("\n", "\r")) else text + "\n"


def csv_batch(chunk: list[str], first: int, width: int,
              dialect: dict[str, Any] | None = None) -> tuple[list[list[str]], Batch]:
    """The rows' cells and the batch to send; a record with other than ``width`` fields, or one
    the csv module cannot read, is an error naming its line."""
    dialect = dialect or {}
    try:
        rows = list(csv.reader(chunk, **dialect))
    except csv.Error:
        rows = []
    if rows and len(rows) == len(chunk) and min(map(len, rows)) == width == max(map(len, rows)):
        return rows, Batch(len(rows), batch_text(chunk))
    # blank lines, quoted newlines, short rows or bad quoting: walk record by record
    rows, ends, spans, keep, raw = [], [], [], [], []

    def tap() -> Iterator[str]:
        for line in chunk:
            raw.append(line)
            yield line

    reader = csv.reader(tap(), **dialect)
    try:
        for row in reader:
            line = first - 1 + reader.line_num
            if row:
                if len(row) != width:
                    raise InvalidInputError(f"line {line}: expected {width} fields, got {len(row)}")
                rows.append(row)
                ends.append(line)
                spans.append(len(raw))
                keep.extend(raw)
            raw.clear()  # a blank line: the readers skip it, and so must COPY
    except csv.Error as e:
        raise InvalidInputError(f"line {first - 1 + reader.line_num}: invalid CSV ({e})") from None
    return rows, Batch(len(rows), line_ended("".join(keep)), ends, spans)


class LineMap:
    """COPY's line number (0-based) -> source line, kept per batch: arithmetic when each record is one line.

    ``len()`` is the number of records sent.
    """

    def __init__(self) -> None:
        self.starts = array("q")  # COPY's line (0-based) of each batch's first record
        self.firsts = array("q")  # source line of each batch's first record
        self.explicit: dict[int, tuple[list[int], list[int]]] = {}  # batch -> (COPY lines, source lines)
        self.count = 0
        self.copy_lines = 0

    def add(self, first: int, batch: Batch) -> None:
        index = len(self.starts)
        self.starts.append(self.copy_lines)
        self.firsts.append(first)
        if batch.ends is None or batch.spans is None:
            self.copy_lines += batch.rows
        else:
            at, copy_ends = self.copy_lines, list[int]()
            for span in batch.spans:
                # COPY counts the line breaks inside quotes once it knows the file's line-break
                # style, which it learns at the end of the first record
                at += span if self.count or copy_ends else 1
                copy_ends.append(at - 1)
            self.explicit[index] = (copy_ends, batch.ends)
            self.copy_lines = at
        self.count += batch.rows

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, copy_line: int) -> int:
        if not 0 <= copy_line < self.copy_lines:
            raise IndexError(copy_line)
        index = bisect.bisect_right(self.starts, copy_line) - 1
        explicit = self.explicit.get(index)
        if explicit is None:
            return self.firsts[index] + copy_line - self.starts[index]
        copy_ends, ends = explicit
        return ends[min(bisect.bisect_left(copy_ends, copy_line), len(ends) - 1)]
