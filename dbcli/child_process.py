"""The child processes dbcli starts: waiting for them without polling, and tying them to dbcli's life.

``Popen.wait(timeout)`` (and ``subprocess.run(timeout=...)``) polls: it sleeps 1, 2, 4... up to
50 ms between checks, so a tool that exits after 3 ms is noticed at about 7. A pidfd (Linux 5.3+)
becomes readable the moment the process exits; elsewhere this falls back to ``Popen.wait``.

``die_with_parent()`` (a ``preexec_fn``) makes a long-running tool (pg_dump, pg_restore, psql,
pg_basebackup, pg_receivewal) get SIGTERM when dbcli dies, ``kill -9`` included: a cron timeout that
kills dbcli alone must not leave a dump running against the server. Linux only (PR_SET_PDEATHSIG);
elsewhere such a child outlives a killed dbcli. The signal follows the *thread* that
started the child: start these children from a thread that waits for them (every caller does).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def wait_exited(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float) -> int | None:
    """The exit code once ``proc`` has exited, or None if it is still running after ``timeout`` seconds."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd_open here, or the child is already reaped
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()  # not select.select: it refuses descriptors above 1023
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return None
    finally:
        os.close(pidfd)
    return proc.wait()


_prctl: list[Callable[..., int] | None] = []  # looked up once, on the first child that needs it


def die_with_parent() -> Callable[[], None] | None:
    """The ``preexec_fn`` of a long-running child: SIGTERM to it when the dbcli thread that started it
    exits (``kill -9`` included). None (no ``preexec_fn``) where there is no PR_SET_PDEATHSIG."""
    if not sys.platform.startswith("linux"):
        return None
    if not _prctl:
        # ctypes (~3 ms) only for commands that start such a child. Looked up here, in the parent:
        # the child between fork and exec must not dlopen (another thread may hold the loader's lock)
        import ctypes

        try:
            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (OSError, AttributeError):
            _prctl.append(None)
    prctl = _prctl[0]
    if prctl is None:
        return None

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return in_child
