"""SHA-256 of a dump file hashed by a thread of its own, started with pg_dump and run once the file is complete."""

from __future__ import annotations

import threading
from pathlib import Path

from dbcli.backup.store import sha256_file


class FileDigest(threading.Thread):
    """SHA-256 of a file once it is complete (hashlib releases the GIL).

    The thread starts with pg_dump and hashes when ``complete()`` says the file is written, while
    the main thread syncs the file and checks its table of contents; ``result()`` waits for the digest.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.digest: str | None = None
        self.error: OSError | None = None
        self._go = threading.Event()
        self._cancelled = False
        self.start()

    def complete(self) -> None:
        self._go.set()

    def cancel(self) -> None:
        self._cancelled = True
        self._go.set()

    def run(self) -> None:
        self._go.wait()
        if self._cancelled:
            return
        try:
            self.digest = sha256_file(self.path)
        except OSError as e:
            self.error = e

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.digest is not None
        return self.digest


def drop(digest: FileDigest) -> None:
    """Stop the digest and wait until it has closed the file.

    An open descriptor keeps an unlinked file's blocks: on a full disk the failure record written
    next needs them back.
    """
    digest.cancel()
    digest.join()
