"""``python -m dbcli`` and the ``dbcli`` console script."""

from __future__ import annotations

import gc


def entry() -> None:
    # no cyclic garbage collection while the modules load: it would walk their objects, which live
    # for the whole run, several times over (~7 ms of every start); dbcli.cli.main turns it back on
    # before the command runs
    gc.disable()
    from dbcli.cli.main import run

    run()


if __name__ == "__main__":
    entry()
