"""Root of the command line: global options, command groups, and the one place errors become exit codes."""

from __future__ import annotations

import gc
import os
import re
import sys
from typing import Annotated, Any

import typer

from dbcli import __version__
from dbcli.cli import completion
from dbcli.cli.state import AppState

# Command groups and top-level commands, by the module that defines them. Only the one named on
# the command line is imported and built: building every Typer command costs ~40 ms per start.
GROUPS: dict[str, str] = {
    "activity": "activity", "backup": "backup", "cache": "cache", "collection": "collection",
    "config": "config", "encryption": "encryption", "local": "local", "order": "order",
    "report": "report", "schema": "schema", "table": "table", "wal": "wal",
}
COMMANDS: dict[str, tuple[str, str]] = {
    "ping": ("servers", "ping"), "wait": ("servers", "wait"),
    "seed": ("seed", "seed"), "demo": ("demo", "demo"),
    "sql": ("sql", "sql"),
    "psql": ("shell", "psql"), "env": ("shell", "env"),
}
_VALUE_OPTIONS = {"--config", "-c", "--profile", "-p", "--format", "-f"}


def _version(value: bool) -> None:
    if value:
        print(f"dbcli {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file (else $DBCLI_CONFIG, "
                      "./dbcli.yaml, $XDG_CONFIG_HOME/dbcli/config.yaml).", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Profile to use (else $DBCLI_PROFILE, "
                       "default_profile).", show_default=False, autocompletion=completion.profiles)] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Default output format for every "
                   "command: table, json, jsonl, csv.", show_default=False, autocompletion=completion.formats)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (also $NO_COLOR).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                       help="Print the version and exit.")] = False,
) -> None:
    """dbcli: PostgreSQL and MongoDB from the shell, cron and CI.

    Example:
        dbcli ping
    """
    ctx.obj = AppState(config_path=config, profile=profile, fmt=fmt, quiet=quiet, debug=debug,
                       no_color=True if no_color else None)


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The Typer app with the named groups/commands, or all of them."""
    import importlib

    app = typer.Typer(
        name="dbcli",
        help="A command-line toolkit for PostgreSQL and MongoDB: schema, CRUD, reports, activity and backups.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        # --install-completion / --show-completion: options of the whole app (a named group's run skips them)
        add_completion=names is None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    wanted = names if names is not None else sorted([*GROUPS, *COMMANDS])
    for name in wanted:
        if name in GROUPS:
            module = importlib.import_module(f"dbcli.cli.commands.{GROUPS[name]}")
            app.add_typer(module.app, name=name)
        else:
            module_name, func = COMMANDS[name]
            module = importlib.import_module(f"dbcli.cli.commands.{module_name}")
            app.command(name)(getattr(module, func))
    return app


def click_command(app: typer.Typer) -> Any:
    """The Click command behind ``app``, its help's Example blocks marked to print as written."""
    command = typer.main.get_command(app)
    verbatim_examples(command)
    return command


_EXAMPLE = re.compile(r"^([ \t]*)(Examples?:)", re.M)


def verbatim_examples(command: Any) -> None:
    """Click re-wraps every help paragraph to the terminal width, which breaks an example command
    mid-line; a paragraph that starts with Click's ``\\b`` marker is printed as written."""
    text = getattr(command, "help", None)
    if text and "\b" not in text:
        command.help = _EXAMPLE.sub(lambda m: f"{m.group(1)}\b\n{m.group(1)}{m.group(2)}", text)
    for sub in (getattr(command, "commands", None) or {}).values():
        verbatim_examples(sub)


def command_name(args: list[str]) -> str | None:
    """The group or command named on the command line (after the global options), if any."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if not arg.startswith("-"):
            return arg
        i += 2 if arg in _VALUE_OPTIONS else 1
    return None


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("DBCLI_DEBUG", "") not in ("", "0")


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps every error to one stderr line and an exit code."""
    code = main(argv)
    # the process ends now: no last collection over every object it holds (~15 ms); files and
    # subprocesses are closed by then, and atexit handlers and stdio flushing still run
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    from dbcli.errors import ExitCode
    from dbcli.stdout import STDOUT

    args = list(sys.argv[1:] if argv is None else argv)
    STDOUT.gone = False
    code = _run_command(args, _debug_requested(args))
    if STDOUT.gone and code == ExitCode.OK:
        # the command succeeded but its reader went away before it had everything: what a shell
        # reports for a process killed by SIGPIPE, so `set -o pipefail` scripts see the cut
        return ExitCode.BROKEN_PIPE
    return code


def _run_command(args: list[str], debug: bool) -> int:
    """Run the command line; every error becomes one stderr line (and a traceback under --debug)
    and its exit code. --debug changes what is printed, never the code."""
    from dbcli.errors import DbcliError, ExitCode
    from dbcli.stdout import silence_stdout

    try:
        named = completion.named_shell(args)
        if named is not None:
            completion.run_named(*named)
            return ExitCode.OK
        # a completion request carries the command line in the shell's variables, not in argv
        typed = completion.completion_args()
        name = command_name(args if typed is None else typed)
        known = name in GROUPS or name in COMMANDS
        if name is None and "--version" in args:
            app = build_app([])  # the eager --version callback needs no command group
        else:
            app = build_app([name] if known and name is not None else None)
        if not gc.isenabled():  # turned off for start-up by the console script (dbcli.__main__)
            gc.freeze()  # what start-up built lives until exit: later collections skip it
            gc.enable()
        result = click_command(app).main(args=args, prog_name="dbcli", standalone_mode=False)
    except typer.TyperException as e:  # usage errors (exit 2) and other parser failures
        show = getattr(e, "show", None)
        if type(e).__name__ == "NoArgsIsHelpError" and callable(show):  # a bare group: its help, as Click shows it
            show()
            return int(getattr(e, "exit_code", ExitCode.USAGE))
        # one line, like every other error (Click's own form is Usage / Try / Error on three)
        ctx = getattr(e, "ctx", None)
        _print_error(e.format_message(), f"see {ctx.command_path} --help" if ctx is not None else None)
        return int(getattr(e, "exit_code", ExitCode.USAGE))
    except (typer.Abort, KeyboardInterrupt):
        print("Error: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except DbcliError as e:
        if debug:
            _print_traceback()
        _print_error(e.message, e.hint)
        return int(e.exit_code)
    except BrokenPipeError:
        # the reader went away while the command streamed straight to stdout (an export): it
        # stopped early, so it did not complete; not an error to report on stderr
        silence_stdout()
        return ExitCode.BROKEN_PIPE
    except SystemExit as e:
        if isinstance(e.__context__, BrokenPipeError):  # Click turns EPIPE into a silent exit 1
            silence_stdout()
            return ExitCode.BROKEN_PIPE
        raise
    except Exception as e:
        if debug:
            _print_traceback()
        if isinstance(e, OSError):  # stdout itself refused (`> /dev/full`, a full disk, ulimit -f)
            from dbcli.fsutil import write_error

            mapped = write_error(e, "standard output")
            if mapped is not None:
                silence_stdout()  # what is still buffered would fail again at exit
                _print_error(mapped.message, mapped.hint)
                return int(mapped.exit_code)
        from dbcli.config.redact import redact_text

        _print_error(f"unexpected {type(e).__name__}: {redact_text(str(e)).splitlines()[0] if str(e) else ''}",
                     None if debug else "run again with --debug for a traceback")
        return ExitCode.UNEXPECTED
    if result == ExitCode.INTERRUPTED:  # Typer turns KeyboardInterrupt into Exit(130)
        print("Error: interrupted", file=sys.stderr)
    return int(result or 0)


def _print_traceback() -> None:
    import traceback  # ~3 ms, only under --debug

    traceback.print_exc()
    sys.stderr.flush()


def _print_error(message: str, hint: str | None) -> None:
    line = f"Error: {message}"
    if hint:
        line += f" (hint: {hint})"
    print(line.replace("\n", " "), file=sys.stderr, flush=True)
