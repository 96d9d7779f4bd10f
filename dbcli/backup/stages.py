"""What a backup run tells its caller while it works: progress messages, and the stages it reaches.

Stages are the points where a caller may hook in, by appending a callable to ``STAGE_HOOKS``:

- ``locked``: ``backup create`` holds the backup directory's lock;
- ``pg_dump``: pg_dump is running and the rows of its snapshot are counted;
- ``mongo``: the first document of a collection is written;
- ``manifest``: the manifest is written and synced, the directory not yet renamed to its id (in
  object storage: every file is uploaded, the manifest not yet);
- ``pg_basebackup``: ``backup create --physical``: pg_basebackup has written the base backup (not yet
  verified, no manifest);
- ``recovery``: ``backup restore --physical``: the restored server is up in ``DIR.partial``, recovering;
- ``upload``: ``backup create --jobs`` into object storage or encrypted: the first file of the directory
  archive is stored, the others not yet (called in the thread that stored it);
- ``pg_restore``: ``backup restore`` has sent pg_restore's first block of SQL to psql (nothing committed).

Each hook is called with the stage's name in the thread doing the work, and holds the run up for as
long as it takes. The tests stop a run at a stage this way and kill it there (tests/backup/pause.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Stage = Literal["locked", "pg_dump", "mongo", "manifest", "pg_restore", "pg_basebackup", "recovery",
                "upload"]
Progress = Callable[[str], None]  # one line about the current step (the CLI shows it on a TTY)

STAGE_HOOKS: list[Callable[[Stage], None]] = []


def reached(stage: Stage) -> None:
    """Call every hook in ``STAGE_HOOKS`` with ``stage``."""
    for hook in tuple(STAGE_HOOKS):
        hook(stage)


def quiet(_message: str) -> None:
    """A ``Progress`` that shows nothing."""
