"""Reading the config file: YAML (plain tags only, no key given twice), through the parse cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcli.config import yaml_cache
from dbcli.config.redact import redact
from dbcli.config.typed import VAR
from dbcli.errors import ConfigError


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of the file at ``path`` ({} for an empty file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    data = yaml_cache.load(path, text, "config", lambda t: _parse_yaml(path, t), keep=_no_secret)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml  # ~10 ms: a warm run is served by the parse cache without it

    try:
        # a SafeLoader subclass: still no tags beyond plain YAML (!!python/... is refused)
        return yaml.load(text, Loader=_unique_key_loader())
    except _DuplicateKey as e:
        raise ConfigError(f"{path} line {e.line}: key {e.key!r} is given twice") from None
    except yaml.constructor.ConstructorError as e:
        line = f" line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"{path}{line}: tag not allowed ({e.problem})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: malformed YAML ({problem})") from None


def _no_secret(data: Any) -> bool:
    """True when the parsed config holds no secret itself (``${VAR}`` references are fine)."""
    def refs_removed(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: refs_removed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [refs_removed(v) for v in value]
        # a reference goes, a ${VAR:-default}'s default stays: it is written in the file
        return VAR.sub(lambda m: m[2] or "", value) if isinstance(value, str) else value

    plain = refs_removed(data)
    return redact(plain) == plain


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


def _unique_key_loader() -> type:
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader
