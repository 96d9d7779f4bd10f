"""docs/cli-reference.md, generated from the commands' own help.

``python -m dbcli.cli.reference --write`` rewrites the file; without ``--write`` the reference is
printed. ``tests/cli/test_docs.py`` fails when the checked-in file differs from what this renders.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from dbcli.cli.main import build_app

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "cli-reference.md"
# options every data command takes, shown once per command as one line
COMMON_OPTIONS = ("fmt", "quiet")
# Typer vendors click as a private module (typer._click): its classes are typed loosely here
Command = Any


def walk(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """(path, command) for every leaf command, sorted by name."""
    subcommands: dict[str, Command] | None = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name in sorted(subcommands):
        yield from walk(subcommands[name], (*path, name))


def root_command() -> Command:
    return typer.main.get_command(build_app())


def option_line(param: Any) -> str | None:
    """One Markdown list item for an argument or option; None for hidden ones and --help."""
    if getattr(param, "hidden", False) or param.name == "help":
        return None
    if param.param_type_name == "argument":
        return f"- `{param.human_readable_name}` (argument)"
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    text = (getattr(param, "help", None) or "").strip()
    return f"- {names}: {text}" if text else f"- {names}"


def example_lines(doc: str) -> list[str]:
    """The lines of the help's ``Example:`` block."""
    m = re.search(r"Example:\s*\n(.*)", doc, re.S)
    if not m:
        return []
    return [line.strip() for line in m.group(1).strip().splitlines() if line.strip()]


def command_section(path: tuple[str, ...], cmd: Command) -> list[str]:
    doc: str = cmd.help or ""
    summary = doc.strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"## `dbcli {' '.join(path)}`", "", summary, ""]
    param_names = {p.name for p in cmd.params}
    lines.extend(line for p in cmd.params if p.name not in COMMON_OPTIONS and (line := option_line(p)))
    if param_names >= set(COMMON_OPTIONS):
        lines.append("- output: `--format table|json|jsonl|csv`, `--quiet`")
    example = example_lines(doc)
    if example:
        lines.extend(["", "```sh", *example, "```"])
    lines.append("")
    return lines


def render() -> str:
    """The whole of docs/cli-reference.md."""
    root = root_command()
    commands = list(walk(root))
    lines = [
        "# Command reference",
        "",
        "<!-- Generated from --help by `python -m dbcli.cli.reference --write`: do not edit by hand. -->",
        "",
        "Exit codes: [output-and-errors.md](output-and-errors.md).",
        "",
        "## Global options",
        "",
        "Given before the command name (`dbcli --debug table get users 1`).",
        "",
    ]
    lines.extend(line for p in root.params if (line := option_line(p)))
    lines.extend(["", "## Commands", ""])
    lines.extend(f"- [`dbcli {' '.join(p)}`](#{anchor(p)})" for p, _ in commands)
    lines.append("")
    for path, cmd in commands:
        lines.extend(command_section(path, cmd))
    return "\n".join(lines).rstrip("\n") + "\n"


def anchor(path: tuple[str, ...]) -> str:
    """The anchor GitHub gives the heading ``dbcli <path>``."""
    return "-".join(("dbcli", *path))


def write(target: Path = REFERENCE) -> bool:
    """Rewrite the reference; True if the file changed."""
    text = render()
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return True


if __name__ == "__main__":
    if "--write" in sys.argv:
        print("updated" if write() else "up to date")
    else:
        sys.stdout.write(render())
