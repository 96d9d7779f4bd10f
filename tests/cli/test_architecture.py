"""The layout's rules, read from the source with ``ast``: no import cycles, no private names across
modules, the sample shop kept apart, Typer only in the CLI, imports at the top, small files."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dbcli"
MAX_LINES = 400
MAX_ROOT_MODULES = 10


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    top: set[str] = field(default_factory=set)  # dbcli modules imported at module level
    nested: dict[str, int] = field(default_factory=dict)  # ... and inside functions: name -> line
    private: list[str] = field(default_factory=list)
    third_party: set[str] = field(default_factory=set)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[module_name(path)] = Module(module_name(path), path, ast.parse(path.read_text(encoding="utf-8")))
    for mod in found.values():
        _collect(mod, found)
    return found


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if mod.path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _collect(mod: Module, known: dict[str, Module]) -> None:
    top_level = {id(n) for n in mod.tree.body}
    for stmt in mod.tree.body:  # `if TYPE_CHECKING:` blocks and try/except at module level count as top
        if isinstance(stmt, (ast.If, ast.Try)):
            top_level.update(id(n) for n in ast.walk(stmt))
    aliases: dict[str, str] = {}
    for node in ast.walk(mod.tree):
        targets: list[tuple[str, str | None]] = []
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            targets = [(base, a.name) for a in node.names]
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
        for base, name in targets:
            root = base.split(".")[0]
            if root != "dbcli":
                mod.third_party.add(root)
                continue
            target = f"{base}.{name}" if name and f"{base}.{name}" in known else base
            if name and name.startswith("_") and not name.startswith("__") and target == base:
                mod.private.append(f"{name} from {base} (line {node.lineno})")
            if target == mod.name:
                continue
            if id(node) in top_level:
                mod.top.add(target)
            else:
                mod.nested.setdefault(target, node.lineno)
    for node in ast.walk(mod.tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and aliases.get(node.value.id, "").startswith("dbcli.")):
            mod.private.append(f"{node.value.id}.{node.attr} (line {node.lineno})")


MODULES = _modules()
CLI = ("dbcli.cli", "dbcli.__main__")


def _is(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _edges(name: str) -> set[str]:
    mod = MODULES[name]
    # importing dbcli.a.b runs dbcli/a/__init__.py first: the package is a dependency too
    out: set[str] = set()
    for target in mod.top | set(mod.nested):
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in MODULES and candidate != name and not name.startswith(candidate + "."):
                out.add(candidate)
    return out


def _cycles() -> Iterator[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = [0]

    def visit(v: str) -> Iterator[list[str]]:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(_edges(v)):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                yield sorted(component)

    for v in sorted(MODULES):
        if v not in index:
            yield from visit(v)


def test_no_import_cycles() -> None:
    assert list(_cycles()) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_across_modules(name: str) -> None:
    assert MODULES[name].private == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not _is(n, "dbcli.shop", *CLI)))
def test_toolkit_does_not_import_the_shop(name: str) -> None:
    assert [t for t in _edges(name) if _is(t, "dbcli.shop")] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _is(n, "dbcli.postgres")))
def test_postgres_does_not_import_backup(name: str) -> None:
    """The toolkit's PostgreSQL layer sits below backups: backups use its client tools, not the reverse."""
    assert [t for t in _edges(name) if _is(t, "dbcli.backup")] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not _is(n, *CLI)))
def test_library_does_not_import_the_cli(name: str) -> None:
    mod = MODULES[name]
    assert [t for t in _edges(name) if _is(t, *CLI)] == []
    assert not {"typer", "click"} & mod.third_party


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not _is(n, *CLI)))
def test_library_imports_dbcli_at_the_top(name: str) -> None:
    """Laziness belongs at the CLI boundary; a library module's dependencies show in its header."""
    assert MODULES[name].nested == {}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_are_small(name: str) -> None:
    lines = len(MODULES[name].path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].path.relative_to(PACKAGE.parent)}: {lines} lines"


def test_few_modules_at_the_root() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


@pytest.mark.parametrize("name", sorted(n for n, m in MODULES.items() if m.path.name == "__init__.py"))
def test_packages_say_what_they_own(name: str) -> None:
    doc = ast.get_docstring(MODULES[name].tree) or ""
    assert len(doc) > 20 and "TODO" not in doc, f"{name}: no docstring saying what the package owns"
