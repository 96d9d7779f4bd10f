"""wait_exited: the exit code as soon as a child exits, None while it runs."""

from __future__ import annotations

import subprocess
import sys
import time

from dbcli.child_process import wait_exited


def test_the_exit_code_of_a_child_that_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_exited(proc, 30) == 3
    assert wait_exited(proc, 30) == 3  # already reaped: the code it had


def test_none_while_the_child_runs() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = time.monotonic()
        assert wait_exited(proc, 0.2) is None
        assert 0.15 < time.monotonic() - started < 5
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert wait_exited(proc, 1) == -9
