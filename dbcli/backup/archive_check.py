"""The checksums of the archive ``restore --jobs`` hands to pg_restore, taken while the target is checked.

Hashing is most of what a restore does before pg_restore starts, and the checks of the target
beside it (pg_restore's version, the server's, an empty database: other processes and the server
answering) leave the CPU to it. pg_restore starts only once every file is known good, so a
damaged archive still writes nothing; and it is still the first thing reported: an error of those
checks waits for the checksums, and gives way to a damaged file (exit 8).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from dbcli.backup.repo import BackupFiles
from dbcli.backup.verify import Verification, check_files
from dbcli.errors import CheckFailedError


class ArchiveCheck:
    """``with ArchiveCheck() as check:`` ... ``check.start(...)``; ``check.result()`` before pg_restore
    writes anything; leaving the block (an error of the checks meanwhile included) waits for it too."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._problem: str | None = None

    def start(self, files: BackupFiles, listed: dict[str, Any], backup_id: str) -> None:
        """Check the size and SHA-256 of each ``listed`` file in the background."""
        def run() -> None:
            check = Verification(backup_id)
            try:
                check_files(files, listed, check, strays=False)
            except BaseException as e:  # raised by result()
                self._error = e
            else:
                problems = check.problems
                self._problem = f"backup {backup_id} is damaged: {problems[0]}" if problems else None

        self._thread = threading.Thread(target=run, daemon=True, name="dbcli-checksums")
        self._thread.start()

    def result(self) -> None:
        """Wait for the checksums; CheckFailedError (exit 8) for a damaged file."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join()
        if self._error is not None:
            raise self._error
        if self._problem is not None:
            raise CheckFailedError(self._problem)

    def __enter__(self) -> ArchiveCheck:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # a damaged archive is reported before whatever the checks found meanwhile (but another
        # damaged file: those of the other parts are checked first, as they were)
        if kind is None or (issubclass(kind, Exception) and not issubclass(kind, CheckFailedError)):
            self.result()
