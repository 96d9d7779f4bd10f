"""Every command has help with an example; the generated reference and the docs' links are current."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dbcli.cli.reference import REFERENCE, render, root_command, walk

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [(" ".join(path), cmd) for path, cmd in walk(root_command())]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_has_summary_and_example(name: str, cmd: Any) -> None:
    doc = getattr(cmd, "help", None) or ""
    assert doc.strip(), f"dbcli {name} has no help"
    assert "Example:" in doc, f"dbcli {name} help has no Example: block"
    assert "dbcli " in doc.split("Example:")[1]


def test_cli_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), \
        "docs/cli-reference.md is stale: run python -m dbcli.cli.reference --write"


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found, in_block = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif not in_block and (m := re.match(r"#{1,6} (.*)", line)):
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (page.parent / target) if target else page
        assert path.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name} links to {target}#{anchor}: no such heading"


def python_imports(page: Path) -> list[str]:
    """The dbcli import lines of the page's ```python blocks."""
    found, in_block = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            in_block = line.strip() == "```python"
            continue
        if in_block and re.match(r"(from dbcli[\w.]* import |import dbcli)", line):
            found.append(line.strip())
    return found


IMPORTS = [(page, line) for page in PAGES for line in python_imports(page)]


@pytest.mark.parametrize(("page", "line"), IMPORTS, ids=[f"{p.name}:{line}" for p, line in IMPORTS])
def test_library_examples_import(page: Path, line: str) -> None:
    """The module paths in the docs' Python examples exist (the examples themselves need servers)."""
    exec(compile(line, f"{page.name}", "exec"), {})
