"""From the merged YAML mapping to the typed model: ${VAR} interpolation, types and limits.

The dataclasses of ``model`` say what each key accepts (their annotations) and the limits of its
value (their field metadata); nothing else lists the keys. Each problem raises one ConfigError
naming the key's path the way the user wrote it (``profiles.dev.backup.compression`` when the
profile set it), with a hint where one helps.
"""

from __future__ import annotations

import dataclasses
import keyword
import os
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from dbcli.config.secrets import decode_key
from dbcli.errors import ConfigError

T = TypeVar("T")
# a dotted key path (``backup.compression``) -> the path to name in a message
Where = Callable[[str], str]

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def suggest(word: str, choices: Any) -> str | None:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def unknown_key(path: str, key: str, choices: Any) -> ConfigError:
    return ConfigError(f"unknown key {path!r}", hint=suggest(key, choices))


def interpolate(value: str, path: str) -> str:
    """``value`` with each ``${VAR}`` / ``${VAR:-default}`` replaced from the environment."""
    if "${" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        got = os.environ.get(var)
        if got is None or (got == "" and default is not None):
            if default is None:
                raise ConfigError(f"environment variable {var} is not set (used by {path})",
                                  hint=f"export {var}, or write ${{{var}:-default}}")
            return default
        return got
    return VAR.sub(repl, value)


def file_key(field_name: str) -> str:
    """The key a field is written as in the file: the field ``from_`` is the key ``from`` (the
    trailing underscore only keeps a Python keyword usable as a field name)."""
    bare = field_name.removesuffix("_")
    return bare if bare != field_name and keyword.iskeyword(bare) else field_name


def build(cls: type[T], raw: Any, path: str, where: Where, **resolved: Any) -> T:
    """``cls`` from the mapping ``raw`` found at ``path``; ``resolved`` gives the defaults the loader
    works out (directories under the profile's data dir), used where the file says nothing."""
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{where(path)}: must be a mapping")
    known = {file_key(f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = dict(resolved)
    for key, value in (raw or {}).items():
        dotted = f"{path}.{key}"
        spec = known.get(key)
        if spec is None:
            raise unknown_key(where(dotted), str(key), known)
        if value is None:
            continue
        converted = _convert(spec.type, spec.metadata, value, dotted, where)
        if converted is not None:
            values[spec.name] = converted
    return cls(**values)


def _convert(kind: Any, meta: Mapping[str, Any], value: Any, path: str, where: Where) -> Any:
    if isinstance(value, str):
        value = interpolate(value, where(path))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return build(kind, value, path, where)
    if meta.get("key"):
        return _keys(kind, value, path, where)
    if meta.get("names"):
        return _names(value, path, where)
    if meta.get("repository"):
        return _repository(value, path, where)
    arms = [a for a in get_args(kind) if a is not type(None)] if get_origin(kind) is types.UnionType else [kind]
    if value == "" and Path in arms:
        return None  # an empty path (``${VAR:-}``) means the default, never the current directory
    for arm in arms:  # a value already of an accepted type first: ``str | int`` keeps 1 an integer
        if _is(arm, value):
            return _checked(arm, meta, value, path, where)
    for arm in arms:
        converted = _from_text(arm, value)
        if converted is not None:
            return _checked(arm, meta, converted, path, where)
    wanted = " or ".join(TYPE_NAMES[a] for a in arms)
    raise ConfigError(f"{where(path)}: must be {wanted}, got {value!r}"[:200])


def _is(kind: Any, value: Any) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is Path:
        return isinstance(value, str)
    return isinstance(value, kind)


def _from_text(kind: Any, value: Any) -> Any:
    """A string (quoted in the file, or from ``${VAR}``) read as ``kind``; None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if kind is bool:
        return True if text in _TRUE else False if text in _FALSE else None
    try:
        return kind(text) if kind in (int, float) else None
    except ValueError:
        return None


def _checked(kind: Any, meta: Mapping[str, Any], value: Any, path: str, where: Where) -> Any:
    if kind is Path:
        return Path(value).expanduser()
    lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
    if kind in (int, float):
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise ConfigError(f"{where(path)}: must be {TYPE_NAMES[kind]} from {lo} to {hi}, got {value!r}")
        if lo is not None and value < lo:
            raise ConfigError(f"{where(path)}: must be at least {lo}, got {value!r}")
        if above is not None and value <= above:
            raise ConfigError(f"{where(path)}: must be more than {above}, got {value!r}")
    return value


def _repository(value: Any, path: str, where: Where) -> Path | str | None:
    """A backup repository: ``s3://bucket[/prefix]`` stays a string, anything else is a path."""
    if not isinstance(value, str):
        raise ConfigError(f"{where(path)}: must be a path, got {value!r}"[:200])
    if not value:
        return None
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme is None:
        return Path(value).expanduser()
    if scheme.group(1).lower() != "s3" or not re.match(r"^s3://[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?(/.*)?$", value):
        raise ConfigError(f"{where(path)}: must be a path or s3://bucket/prefix, got {value!r}"[:200])
    return value.rstrip("/")


def _keys(kind: Any, value: Any, path: str, where: Where) -> Any:
    """One base64 key (``bytes``), or a mapping of key id to key (``dict[str, bytes]``)."""
    if get_origin(kind) is not dict:
        if not isinstance(value, str):
            raise ConfigError(f"{where(path)}: must be a base64-encoded 32-byte key")
        return decode_key(value, where(path)) if value.strip() else None  # ``${KEY:-}``: no key
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where(path)}: must be a mapping of key id to key")
    out = {}
    for kid, text in value.items():
        inner = f"{path}.{kid}"
        if not isinstance(text, str):
            raise ConfigError(f"{where(inner)}: must be a base64-encoded 32-byte key")
        out[str(kid)] = decode_key(interpolate(text, where(inner)), where(inner))
    return out


def _names(value: Any, path: str, where: Where) -> dict[str, list[str]]:
    """``{table: [column, ...]}``; a single name may be written without the list."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where(path)}: must be a mapping of names to lists")
    out: dict[str, list[str]] = {}
    for name, items in value.items():
        inner = where(f"{path}.{name}")
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ConfigError(f"{inner}: must be a list of names")
        items = [interpolate(i, inner) for i in items]
        if items:
            out[str(name)] = list(items)
    return out
