"""The process's stdout and its reader: a reader that goes away (``dbcli ... | head``) is recorded,
not raised, so a command still ends with its own result.

Kept apart from :mod:`dbcli.output` so that the CLI boundary can ask whether the reader went away
without loading the output layer (and its json, csv and decimal imports) on every start.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class Stdout:
    """The process's stdout as :class:`Output` writes to it, watching for the reader going away.

    When the reader closes the pipe (``dbcli ... | head``) further writes are dropped and ``gone``
    is set: the command still runs to its own result (a failed check still fails), and the CLI
    boundary turns a success whose output was cut off into exit 141. Row writers stop pulling rows
    once ``gone`` is set, so a long listing ends early. Always the current ``sys.stdout``, so
    ``contextlib.redirect_stdout`` works.
    """

    def __init__(self) -> None:
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                sys.stdout.write(text)
            except BrokenPipeError:
                self.reader_went_away()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self.reader_went_away()

    def reader_went_away(self) -> None:
        self.gone = True
        silence_stdout()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer...
        return getattr(sys.stdout, name)


STDOUT = Stdout()


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null: what is still buffered for a gone reader goes nowhere
    (instead of failing again when Python flushes stdout at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests' StringIO)
        pass
