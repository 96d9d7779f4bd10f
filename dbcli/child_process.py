"""Waiting for a child process without polling.

``Popen.wait(timeout)`` (and ``subprocess.run(timeout=...)``) polls: it sleeps 1, 2, 4... up to
50 ms between checks, so a tool that exits after 3 ms is noticed at about 7. A pidfd (Linux 5.3+)
becomes readable the moment the process exits; elsewhere this falls back to ``Popen.wait``.
"""

from __future__ import annotations

import os
import select
import subprocess


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
