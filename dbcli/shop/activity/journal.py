"""The activity journal: one small document per batch in flight, and how to tell a dead batch's entry.

A writer announces each batch (its users, host, pid and start time) before writing anything and
removes the entry once the counters and buckets are written. An entry left behind by a process
that is gone marks users whose counters must be recomputed (``recompute.recover``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

# a journal entry of another host, or of a process we cannot check, counts as crashed after this
STALE_AFTER = dt.timedelta(minutes=10)
# journal entries this process is writing right now (a library user may write from several threads)
IN_FLIGHT: set[str] = set()


def journal_entry(entry_id: str, users: list[int] | None, hours: list[str] | None = None) -> dict[str, Any]:
    """The entry of a batch touching ``users`` (None: every user, as a rebuild of everything does)
    and, when given, only the buckets of ``hours`` (so recovery reads and repairs only those)."""
    doc: dict[str, Any] = {"_id": entry_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": dt.datetime.now(dt.UTC)}
    if users is None:
        doc["all"] = True
    else:
        doc["users"] = users
    if hours is not None:
        doc["hours"] = hours
    return doc


def is_stale(entry: dict[str, Any]) -> bool:
    """Whether the batch of a journal entry can no longer finish (its process is gone)."""
    pid = entry.get("pid")
    if entry.get("host") == socket.gethostname() and isinstance(pid, int):
        if pid == os.getpid():
            # ours: live if a thread of this process is still writing it; otherwise its batch
            # raised, or an earlier process with our (reused) pid wrote it
            return entry.get("_id") not in IN_FLIGHT
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False  # alive: a slow batch is not a dead one
    # another host: we cannot ask, so an entry older than any batch takes counts as dead
    started = entry.get("started")
    if not isinstance(started, dt.datetime):
        return True
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - started > STALE_AFTER
