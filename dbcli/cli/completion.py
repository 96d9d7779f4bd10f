"""Shell completion: which command group a completion request needs, and the dynamic values.

The shell runs ``dbcli`` with ``_DBCLI_COMPLETE`` set and the command line in its own variables
(bash: ``COMP_WORDS``/``COMP_CWORD``; zsh and fish: ``_TYPER_COMPLETE_ARGS``). ``dbcli.cli.main``
asks :func:`completion_args` for the words already typed, so only the group being completed is
imported, as on a normal run.

Option values: ``--format`` completes to the output formats. Dynamic values (tables,
collections, reports, profiles, backup ids) come from small library
functions, run under one deadline (:data:`DEADLINE`) with short server timeouts: a server that is
down or stuck gives no candidates instead of a shell that hangs. A local server that is not running
is not started for a completion. Any failure gives no candidates, never a message.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from dbcli.config.model import Config

COMPLETE_VAR = "_DBCLI_COMPLETE"
DEADLINE = 1.5  # seconds for a whole lookup: connect, query, answer
SERVER_TIMEOUT = 1.0  # seconds: connect, statement and server-selection timeouts of a lookup


def completion_args() -> list[str] | None:
    """The words typed before the one being completed, when the shell asks for completions."""
    instruction = os.environ.get(COMPLETE_VAR, "")
    if not instruction.startswith(("complete_", "source_")):
        return None
    from typer.completion import completion_init

    completion_init()  # Typer registers its bash/zsh/fish classes only in an app built with completion
    if instruction.startswith("source_"):
        return []
    if instruction == "complete_bash":
        words = _split(os.environ.get("COMP_WORDS", ""))
        try:
            cword = int(os.environ.get("COMP_CWORD", "0"))
        except ValueError:
            return []
        return words[1:cword]
    text = os.environ.get("_TYPER_COMPLETE_ARGS", "")
    words = _split(text)[1:]
    # zsh and fish pass the line up to the cursor: a last word without a space after it is incomplete
    return words[:-1] if words and not text.endswith(" ") else words


SHELLS = ("bash", "zsh", "fish")
_SCRIPT_OPTIONS = ("--show-completion", "--install-completion")


def named_shell(args: list[str]) -> tuple[str, str] | None:
    """(option, shell) for ``dbcli --show-completion zsh`` / ``--install-completion fish``.

    Typer's two options are flags that detect the shell: a name after one would be ignored and the
    detected shell's script printed (bash's, from a Dockerfile's ``RUN``), where ``gh``, ``poetry``
    or ``rustup`` take the shell's name.
    """
    if len(args) == 2 and args[0] in _SCRIPT_OPTIONS and not args[1].startswith("-"):
        return args[0], args[1]
    if args == ["--install-completion"] and _detected_shell() == "fish":
        return args[0], "fish"  # Typer's own install would write under ~/.config whatever XDG_CONFIG_HOME says
    return None


def _detected_shell() -> str | None:
    """The shell ``dbcli`` runs from, detected as Typer does (shellingham, from the process tree)."""
    try:
        import shellingham  # type: ignore[import-untyped]  # Typer's dependency, no type hints
    except ImportError:  # typer-slim comes without it: Typer's options then detect nothing either
        return None
    try:
        return str(shellingham.detect_shell()[0])
    except shellingham.ShellDetectionFailure:
        return None


def run_named(option: str, shell: str) -> None:
    """Print or install the completion script of ``shell``, as Typer's options do for the detected one."""
    from typer.completion import get_completion_script, install

    from dbcli.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"{option}: unsupported shell {shell!r}", hint="bash, zsh or fish")
    if option == "--show-completion":
        print(get_completion_script(prog_name="dbcli", complete_var=COMPLETE_VAR, shell=shell))
        return
    if shell == "fish":
        path = install_fish(get_completion_script(prog_name="dbcli", complete_var=COMPLETE_VAR, shell=shell))
    else:
        _, path = install(shell=shell, prog_name="dbcli", complete_var=COMPLETE_VAR)
    print(f"{shell} completion installed in {path}")
    print("Completion will take effect once you restart the terminal")


def install_fish(script: str) -> Path:
    """Write fish's script where fish reads it: ``$XDG_CONFIG_HOME/fish/completions`` (Typer's
    install always takes ``~/.config``, which a fish with XDG_CONFIG_HOME set never reads)."""
    from dbcli.config.paths import xdg
    from dbcli.fsutil import atomic_write, write_errors_mapped

    path = xdg("XDG_CONFIG_HOME", ".config") / "fish" / "completions" / "dbcli.fish"
    with write_errors_mapped(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(f"{script}\n")
    return path


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an open quote in the word being typed
        return text.split()


# ---- dynamic values: each callback takes (ctx, incomplete) as Typer's autocompletion= expects ----

def formats(ctx: typer.Context, incomplete: str) -> list[str]:
    """The output formats every data-printing command takes (``--format``/``-f``)."""
    from dbcli.output import FORMATS

    return [f for f in FORMATS if f.startswith(incomplete.lower())]


def profiles(ctx: typer.Context, incomplete: str) -> list[str]:
    from dbcli.config.load import profile_names

    config = ctx.find_root().params.get("config")
    return _matching(lambda: profile_names(config), incomplete)


def tables(ctx: typer.Context, incomplete: str) -> list[str]:
    def lookup() -> list[str]:
        from dbcli.postgres import catalog, connection

        cfg = _config(ctx, postgres=True)
        with connection.connect(cfg, autocommit=True) as conn:
            return catalog.relation_names(conn)
    return _matching(lookup, incomplete)


def collections(ctx: typer.Context, incomplete: str) -> list[str]:
    def lookup() -> list[str]:
        from dbcli.mongo.collections import collection_names

        return collection_names(_config(ctx, mongo=True))
    return _matching(lookup, incomplete)


def reports(ctx: typer.Context, incomplete: str) -> list[str]:
    def lookup() -> list[str]:
        from dbcli.reports.registry import names

        return names(_config(ctx))
    return _matching(lookup, incomplete)


def backups(ctx: typer.Context, incomplete: str) -> list[str]:
    def lookup() -> list[str]:
        from pathlib import Path

        from dbcli.backup.ids import all_ids
        from dbcli.backup.store import root_dir

        override = ctx.params.get("dir_")
        root = Path(override).expanduser() if override else root_dir(_config(ctx))
        return [*all_ids(root), "latest"]
    return _matching(lookup, incomplete)


class _NotRunning(Exception):
    """A local server is stopped: a completion does not start it."""


def _config(ctx: typer.Context, *, postgres: bool = False, mongo: bool = False) -> Config:
    """The profile's configuration with every server timeout at :data:`SERVER_TIMEOUT`."""
    from pathlib import Path

    from dbcli.config.load import load_config

    root = ctx.find_root().params
    cfg = load_config(root.get("config"), root.get("profile"))
    pg, mg = cfg.postgres, cfg.mongo
    pg.connect_timeout = pg.statement_timeout = SERVER_TIMEOUT
    pg.liveness_check = 0  # the deadline covers a stuck server
    mg.connect_timeout = mg.server_selection_timeout = mg.socket_timeout = mg.timeout = SERVER_TIMEOUT
    if postgres and pg.embedded:
        from dbcli.postgres import embedded

        if embedded.running(Path(pg.data_dir)) is None:
            raise _NotRunning
    if mongo and mg.embedded:
        from dbcli.mongo import embedded as mongo_embedded

        if mongo_embedded.running(Path(mg.data_dir)) is None:
            raise _NotRunning
    return cfg


def _matching(lookup: Callable[[], list[str]], incomplete: str) -> list[str]:
    """The names ``lookup`` finds that start with ``incomplete``; none on failure or past the deadline.

    The lookup runs in a daemon thread: a lookup still waiting at the deadline is abandoned (the
    process ends right after the completion is printed), whatever it waits on (DNS, connect, a
    query).
    """
    import threading

    found: list[list[str]] = []

    def run() -> None:
        with contextlib.suppress(Exception):  # a completion that cannot look values up offers none
            found.append(lookup())

    worker = threading.Thread(target=run, name="dbcli-completion", daemon=True)
    worker.start()
    worker.join(DEADLINE)
    if not found:
        return []
    return sorted(n for n in found[0] if n.startswith(incomplete))
