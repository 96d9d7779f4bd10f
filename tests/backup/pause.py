"""Stops a backup run at one of its stages, so that a test can kill it there.

Imported by the child process a test starts (see ``Running`` in test_backup_process), before dbcli
runs: ``install`` adds a hook to dbcli.backup.stages that prints a line to stderr at the stage,
which the test waits for, then sleeps.
"""

from __future__ import annotations

import sys
import time

from dbcli.backup.stages import STAGE_HOOKS, Stage


def install(stage: str, seconds: float) -> None:
    def pause(reached: Stage) -> None:
        if reached == stage:
            print(f"dbcli-test: paused at {stage}", file=sys.stderr, flush=True)
            time.sleep(seconds)

    STAGE_HOOKS.append(pause)


# the child's command line: python -c CHILD STAGE SECONDS dbcli-args...
CHILD = ("import sys; from tests.backup.pause import install; install(sys.argv.pop(1), float(sys.argv.pop(1))); "
         "from dbcli.__main__ import entry; entry()")
