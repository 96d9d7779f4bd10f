"""``table import --skip-bad N``: the lines of a CSV batch that fail, set aside verbatim.

COPY stops at the first bad line, and these must all be found: with ``--skip-bad``, every batch
is checked client-side against the column types (:mod:`dbcli.postgres.csv_checks`), which the
import without it leaves to COPY. A batch whose whole-batch checks fail is walked record by
record: a record that cannot be read, has the wrong number of fields, holds a NUL character or a
cell its column refuses is kept aside with its source text (every physical line of it) and the
reason; the others go to COPY. Only what the client-side checks see can be skipped: an error
only the server finds (a duplicate key, a foreign key, a CHECK constraint) still fails the whole
import.
"""

from __future__ import annotations

import csv
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbcli.errors import InvalidInputError
from dbcli.postgres.csv_batches import Batch, csv_batch, line_ended
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
    """Splits a batch into the records to send and those to set aside (at most ``limit`` in all).

    ``checks``: (position, column, check) of each checked column; ``batch`` runs them on whole
    columns first (the whole-batch ``match`` first of all), and walks record by record only a
    batch they refuse.
    """

    def __init__(self, limit: int, width: int, dialect: dict[str, Any], checks: Sequence[Check],
                 header: list[str], match: Callable[[str], Any] | None = None) -> None:
        self.limit, self.width, self.dialect, self.checks = limit, width, dialect, list(checks)
        self.match = match
        self.rejected = Rejected(header=list(header))

    def batch(self, chunk: list[str], text: str, first: int) -> Batch:
        """The batch to send of ``chunk`` (whose text is ``text``), bad records set aside."""
        if self.match is not None and self.match(text):
            return Batch(len(chunk), text)  # one record a line, every cell valid: nothing to split
        try:
            return checked(chunk, first, self.width, self.dialect, self.checks)
        except InvalidInputError:
            return self.sift(chunk, first)

    def sift(self, chunk: list[str], first: int) -> Batch:
        """The records kept: their text, the line each ends on and how many lines each takes."""
        kept: list[str] = []
        ends: list[int] = []
        spans: list[int] = []
        for line, span, raw, row, error in _records(chunk, first, self.dialect):
            if row == [] and error is None:
                continue  # a blank line: skipped, as the readers do
            reason = error or self._why(row)
            if reason is None:
                kept.append(raw)
                ends.append(line + span - 1)
                spans.append(span)
                continue
            self.rejected.lines.append(line_ended(raw))
            self.rejected.reasons.append(f"line {line}: {reason}")
            if len(self.rejected) > self.limit:
                raise InvalidInputError(f"more than {self.limit} bad line(s) (--skip-bad {self.limit}); "
                                        f"nothing imported; the last: line {line}: {reason}")
        return Batch(len(kept), line_ended("".join(kept)), ends, spans)

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


def checked(chunk: list[str], first: int, width: int, dialect: dict[str, Any], checks: Sequence[Check]) -> Batch:
    """The batch to send of ``chunk``, every cell checked; the first bad one is an error naming its
    line and column."""
    rows, batch = csv_batch(chunk, first, width, dialect)
    for position, name, check in checks if rows else ():
        try:
            check(list(map(operator.itemgetter(position), rows)))
        except BadValue as e:
            where = batch.ends[e.index] if batch.ends else first + e.index
            raise InvalidInputError(f"line {where}, column {name}: {e}") from None
    return batch


def null_read(check: Callable[[Sequence[str]], None], null: str) -> Callable[[Sequence[str]], None]:
    """The check of cells where the ``--null`` text means NULL (what an empty cell means by default)."""
    def check_with_null(values: Sequence[str]) -> None:
        check(["" if v == null else v for v in values])
    return check_with_null


def _records(chunk: list[str], first: int,
             dialect: dict[str, Any]) -> Iterator[tuple[int, int, str, list[str], str | None]]:
    """(line the record starts on, lines it takes, its text, its cells, why it cannot be read) of each record."""
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
                yield line, len(raw), "".join(raw), row, None
                line += len(raw)
                raw.clear()
            return
        except csv.Error as e:  # the record's text so far is set aside; reading goes on after it
            yield line, len(raw), "".join(raw), [], f"invalid CSV ({e})"
            line += len(raw)
            raw.clear()
