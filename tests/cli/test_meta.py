"""Every command has help with an example, and the README documents each one (reference up to date)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbcli.cli.reference import END, START, render, root_command, walk

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [(" ".join(path), cmd) for path, cmd in walk(root_command())]


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_has_summary_and_example(name: str, cmd: object) -> None:
    doc = getattr(cmd, "help", None) or ""
    assert doc.strip(), f"dbcli {name} has no help"
    assert "Example:" in doc, f"dbcli {name} help has no Example: block"
    assert "dbcli " in doc.split("Example:")[1]


def test_readme_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(START):readme.index(END) + len(END)]
    assert block == render(), "run: python -m dbcli.cli.reference --write"


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_readme_mentions_command_outside_reference(name: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = readme[:readme.index(START)] + readme[readme.index(END):]
    assert f"dbcli {name}" in prose, f"the README prose never shows `dbcli {name}`"
