"""``table import --skip-bad N``: the lines of a CSV batch that fail, set aside verbatim.

A batch whose whole-batch checks fail is walked record by record: a record that cannot be
read, has the wrong number of fields, holds a NUL character or a cell its column refuses is
kept aside with its source text (every physical line of it) and the reason; the others go to
COPY. Only what the client-side checks see can be skipped: an error only the server finds (a
duplicate key, a foreign key, a CHECK constraint) still fails the whole import.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbcli.errors import InvalidInputError
from dbcli.postgres.csv_checks import BadValue

Check = tuple[int, str, Callable[[Sequence[str]], None]]


@dataclass
class Rejected:
    """The lines set aside: the header line(s) of the file first, then each bad record verbatim."""

    header: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # "line N: why", one per record

    def __len__(self) -> int:
        return len(self.reasons)

    def text(self) -> str:
        return "".join(self.header) + "".join(self.lines)


class Sifter:
    """Splits a batch into the records to send and those to set aside (at most ``limit`` in all)."""

    def __init__(self, limit: int, width: int, dialect: dict[str, Any], checks: Sequence[Check],
                 header: list[str]) -> None:
        self.limit, self.width, self.dialect, self.checks = limit, width, dialect, list(checks)
        self.rejected = Rejected(header=list(header))

    def sift(self, chunk: list[str], first: int) -> tuple[int, str, list[int]]:
        """(records kept, their text, the line each starts on)."""
        kept: list[str] = []
        ends: list[int] = []
        for line, raw, row, error in _records(chunk, first, self.dialect):
            if row == [] and error is None:
                continue  # a blank line: skipped, as the readers do
            reason = error or self._why(row)
            if reason is None:
                kept.append(raw)
                ends.append(line)
                continue
            self.rejected.lines.append(raw if raw.endswith(("\n", "\r")) else raw + "\n")
            self.rejected.reasons.append(f"line {line}: {reason}")
            if len(self.rejected) > self.limit:
                raise InvalidInputError(f"more than {self.limit} bad line(s) (--skip-bad {self.limit}); "
                                        f"nothing imported; the last: line {line}: {reason}")
        text = "".join(kept)
        return len(kept), text if not text or text.endswith(("\n", "\r")) else text + "\n", ends

    def _why(self, row: list[str]) -> str | None:
        if len(row) != self.width:
            return f"expected {self.width} fields, got {len(row)}"
        for position, name, check in self.checks:
            try:
                check([row[position]])
            except BadValue as e:
                return f"column {name}: {e}"
        if any("\x00" in cell for cell in row):
            return "NUL characters are not allowed in CSV text"
        return None


def _records(chunk: list[str], first: int,
             dialect: dict[str, Any]) -> Iterator[tuple[int, str, list[str], str | None]]:
    """(line the record starts on, its text, its cells, why it cannot be read) of each record."""
    raw: list[str] = []
    line = first

    def tap() -> Iterator[str]:
        for text in chunk:
            raw.append(text)
            yield text

    source = tap()
    while True:
        reader = csv.reader(source, **dialect)
        try:
            for row in reader:
                yield line, "".join(raw), row, None
                line += len(raw)
                raw.clear()
            return
        except csv.Error as e:  # the record's text so far is set aside; reading goes on after it
            yield line, "".join(raw), [], f"invalid CSV ({e})"
            line += len(raw)
            raw.clear()
