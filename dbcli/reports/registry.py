"""Where reports come from: the built-in files and those in ``reports.dir``, read through the YAML
parse cache. A name defined twice, or a team report named like a built-in one, is a config error.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from dbcli.config import yaml_cache
from dbcli.config.model import Config
from dbcli.errors import ConfigError, NotFoundError
from dbcli.reports.model import Report, parse

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
EXTENSIONS = (".yaml", ".yml", ".json")


def user_dir(cfg: Config) -> Path | None:
    path = cfg.reports.dir
    if path is None:
        return None
    if not path.is_dir():
        raise ConfigError(f"reports.dir is not a directory: {path}")
    return path


def _files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in EXTENSIONS or path.name.startswith("."):
            continue
        if path.stem in found:
            raise ConfigError(f"report {path.stem!r} is defined twice: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def _catalog(cfg: Config) -> tuple[dict[str, Path], dict[str, Path]]:
    builtin = _files(BUILTIN_DIR)
    directory = user_dir(cfg)
    user = _files(directory) if directory else {}
    for name, path in user.items():
        if name in builtin:
            raise ConfigError(f"report {name!r} in {path} clashes with the built-in report of that name",
                              hint="rename the file and its name: key")
    return builtin, user


def names(cfg: Config) -> list[str]:
    """Every report's name, from the file names alone (no report file is read)."""
    builtin, user = _catalog(cfg)
    return sorted([*builtin, *user])


def load_all(cfg: Config) -> list[Report]:
    builtin, user = _catalog(cfg)
    reports = [load_file(p, builtin=True) for p in builtin.values()]
    reports += [load_file(p, builtin=False) for p in user.values()]
    return sorted(reports, key=lambda r: r.name)


def get(cfg: Config, name: str) -> Report:
    """One report by name; reads only its own file (plus the directory listings for clashes)."""
    builtin, user = _catalog(cfg)
    if name in builtin:
        return load_file(builtin[name], builtin=True)
    if name in user:
        return load_file(user[name], builtin=False)
    close = difflib.get_close_matches(name, [*builtin, *user], n=1, cutoff=0.5)
    raise NotFoundError(f"unknown report {name!r}",
                        hint=f"did you mean {close[0]!r}?" if close else "dbcli report list shows them")


def load_file(path: Path, *, builtin: bool) -> Report:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read report file {path}: {e.strerror}") from None
    data = yaml_cache.load(path, text, "report", lambda t: _parse_yaml(path, t))
    return parse(data, path, builtin=builtin, text=text)


def _parse_yaml(path: Path, text: str) -> Any:
    # PyYAML costs ~13 ms to import: a warm run is served by the parse cache and never loads it
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader (the C one when built)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed report file ({getattr(e, 'problem', None) or e})") from None
