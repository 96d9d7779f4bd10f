"""The README's command reference, generated from the commands' own help (``python -m dbcli.cli.reference``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for every leaf command, in help order."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name in sorted(subcommands):
        yield from walk(subcommands[name], (*path, name))


def root_command() -> Any:
    import typer

    from dbcli.cli.main import build_app

    return typer.main.get_command(build_app())


def _option_line(param: Any) -> str | None:
    if getattr(param, "hidden", False) or param.name in ("help",):
        return None
    if param.param_type_name == "argument":
        return f"- `{param.human_readable_name}` (argument)"
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    text = (getattr(param, "help", None) or "").strip()
    return f"- {names}: {text}" if text else f"- {names}"


def render() -> str:
    lines = [START, "", "Generated from `--help` by `python -m dbcli.cli.reference --write`.", ""]
    for path, cmd in walk(root_command()):
        doc = cmd.help or ""
        summary = doc.strip().split("\n\n")[0].replace("\n", " ")
        example = _example(doc)
        lines.append(f"#### `dbcli {' '.join(path)}`")
        lines.append("")
        lines.append(summary)
        lines.append("")
        common = {p.name for p in cmd.params} >= {"fmt", "quiet"}
        opts = [line for p in cmd.params if p.name not in ("fmt", "quiet") and (line := _option_line(p))]
        lines.extend(opts)
        if common:
            lines.append("- output: `--format table|json|jsonl|csv`, `--quiet`")
        if example:
            lines.extend(["", "```sh", *example, "```"])
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _example(doc: str) -> list[str]:
    m = re.search(r"Example:\s*\n(.*)", doc, re.S)
    if not m:
        return []
    return [line.strip() for line in m.group(1).strip().splitlines() if line.strip()]


def update_readme(readme: Path) -> bool:
    """Rewrite the reference block; True if the file changed."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    new = text[:start] + render() + text[end + len(END):]
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "README.md"
    if "--write" in sys.argv:
        print("updated" if update_readme(target) else "up to date")
    else:
        print(render())
