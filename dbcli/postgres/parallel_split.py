"""An input file cut into parts at record boundaries, for ``dbcli table import --jobs N``.

A cut falls only where a record ends: for JSON lines at a newline; for CSV at a newline with an
even number of quote characters before it (the rule the single-job reader batches by, so a quoted
line break never splits a record). Each part knows the source line it starts on, so an error in
it names the same line as a single-job import would. The file is only scanned (quote and newline
counts, C-speed ``bytes.count``), never held in memory.
"""

from __future__ import annotations

import io
import mmap
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dbcli import readers
from dbcli.errors import DbcliError, UsageError

MIN_PART_BYTES = 1 << 20  # below this a part costs more (a connection, a transaction) than it saves
_SCAN = 1 << 22
_LINE = re.compile(r"^line (\d+)")


@dataclass(frozen=True)
class Part:
    index: int
    start: int  # byte offsets in the file: [start, end)
    end: int
    first_line: int  # the source line number of the part's first byte


def ascii_framed(encoding: str, quote: str) -> bool:
    """Whether the encoding writes line breaks and the quote as their single ASCII bytes (so a cut
    found in bytes is a cut in text): utf-8 and the 8-bit encodings do, utf-16/32 do not."""
    try:
        return f"a\n{quote}".encode(encoding) == f"a\n{quote}".encode("ascii")
    except (LookupError, UnicodeError):
        return False


def split(path: str, jobs: int, *, quote: str | None, header_records: int = 0,
          min_part: int | None = None) -> list[Part]:
    """Up to ``jobs`` parts of about equal size; the first holds the ``header_records`` too.

    ``quote``: the CSV quote character (None for JSON lines). A file too small to be worth it, or
    one without a newline to cut at, comes back as one part.
    """
    size = Path(path).stat().st_size
    if size == 0:
        return [Part(0, 0, 0, 1)]
    q = quote.encode("ascii") if quote else None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos, lines, quotes = 0, 0, 0
        for _ in range(header_records):
            pos, lines, quotes = _record_end(mm, pos, lines, quotes, q, size)
        parts = max(1, min(jobs, (size - pos) // max(min_part or MIN_PART_BYTES, 1)))
        cuts: list[tuple[int, int]] = [(0, 1)]
        body = pos
        for k in range(1, parts):
            target = body + (size - body) * k // parts
            if target <= pos:
                continue
            more_lines, more_quotes = _counts(mm, q, pos, target)
            lines, quotes = lines + more_lines, quotes + more_quotes
            # the cut goes after the next line break that ends a record
            pos, lines, quotes = _record_end(mm, target, lines, quotes, q, size)
            if pos >= size:
                break
            cuts.append((pos, lines + 1))
    bounds = [c[0] for c in cuts] + [size]
    return [Part(i, bounds[i], bounds[i + 1], cuts[i][1]) for i in range(len(cuts))]


def _record_end(mm: mmap.mmap, pos: int, lines: int, quotes: int, q: bytes | None,
                size: int) -> tuple[int, int, int]:
    """(offset just past the line break that ends the record going on at ``pos``, lines, quotes so far)."""
    while True:
        nl = mm.find(b"\n", pos)
        if nl < 0:
            return size, lines, quotes
        if q is not None:
            quotes += _count(mm, q, pos, nl + 1)
        lines += 1
        pos = nl + 1
        if q is None or quotes % 2 == 0:
            return pos, lines, quotes


def _count(mm: mmap.mmap, byte: bytes, start: int, end: int) -> int:
    return sum(mm[i:min(i + _SCAN, end)].count(byte) for i in range(start, end, _SCAN))


def _counts(mm: mmap.mmap, q: bytes | None, start: int, end: int) -> tuple[int, int]:
    """(line breaks, quotes) in [start, end): each slice copied out of the map once for both counts."""
    lines = quotes = 0
    for i in range(start, end, _SCAN):
        chunk = mm[i:min(i + _SCAN, end)]
        lines += chunk.count(b"\n")
        if q is not None:
            quotes += chunk.count(q)
    return lines, quotes


@contextmanager
def open_part(path: str, part: Part, encoding: str) -> Iterator[IO[str]]:
    """The part as a text stream, decoded like :func:`dbcli.readers.open_input` decodes a file."""
    with open(path, "rb") as fh:
        fh.seek(part.start)
        raw = io.BufferedReader(_Range(fh, part.end - part.start), 1 << 16)
        stream = io.TextIOWrapper(raw, encoding=encoding, errors=readers.NOT_UTF8, newline="")
        try:
            yield stream
        finally:
            stream.detach()


def placed(err: DbcliError, part: Part) -> DbcliError:
    """The error of a part with its ``line N`` turned into the source file's line number."""
    m = _LINE.match(err.message)
    if m is None or part.first_line == 1:
        return err
    line = int(m[1]) + part.first_line - 1
    return type(err)(f"line {line}{err.message[m.end():]}", hint=err.hint, sqlstate=err.sqlstate)


def refuse(reason: str) -> UsageError:
    return UsageError(f"--jobs: {reason}; run without --jobs")


class _Range(io.RawIOBase):
    """At most ``left`` bytes of ``fh`` from where it stands."""

    def __init__(self, fh: IO[bytes], left: int) -> None:
        self.fh, self.left = fh, left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)[:self.left]
        if not len(view):
            return 0
        n = self.fh.readinto(view)  # type: ignore[attr-defined]
        self.left -= n
        return n
