"""YAML configuration: lookup, profiles, ${VAR} interpolation, validation and redaction.

Resolution order for the file: --config PATH, $DBCLI_CONFIG, ./dbcli.yaml,
$XDG_CONFIG_HOME/dbcli/config.yaml; with none, the built-in profile ``local`` on the embedded
PostgreSQL. Profile: --profile NAME, $DBCLI_PROFILE, ``default_profile``, then the only/first one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli.errors import ConfigError

# The accepted keys. A leaf is the type its value must have; a dict is a section.
# ``dict`` as a leaf means free-form mapping (validated by the feature that reads it).
SPEC: dict[str, Any] = {
    "postgres": {
        "embedded": bool, "data_dir": str, "dsn": str, "host": str, "port": int, "dbname": str,
        "user": str, "password": str, "sslmode": str, "password_file": str,
        "connect_timeout": float, "statement_timeout": float, "application_name": str,
        "pool": {"min_size": int, "max_size": int},
    },
    "mongo": {
        "uri": str, "database": str, "embedded": bool, "binary": str, "data_dir": str,
        "password_file": str, "connect_timeout": float,
        "write_concern": (str, int), "read_preference": str,
    },
    "backup": {
        "dir": str, "encryption_key": str, "compression": int, "pg_dump": str,
        "retention": {"keep_last": int, "keep_daily": int, "keep_weekly": int, "keep_monthly": int},
    },
    "cache": {"url": str, "ttl": int, "dir": str},
    "schema": {"dir": str},
    "reports": {"dir": str, "timeout": float},
    "encryption": {"key": str, "key_id": str, "previous_keys": dict, "columns": dict, "fields": dict},
    "activity": {"bucket_size": int},
}
TOP_LEVEL = {"profiles", "default_profile", *SPEC}
SECRET_KEYS = {"password", "encryption_key", "key", "previous_keys"}
BUILTIN_PROFILE = "local"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _xdg(name: str, fallback: str) -> Path:
    return Path(os.environ.get(name) or Path.home() / fallback)


def data_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "dbcli"


def cache_home() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "dbcli"


@dataclass
class PostgresConfig:
    embedded: bool = True
    data_dir: str = ""
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = None
    sslmode: str | None = None
    password_file: str | None = None
    connect_timeout: float = 5.0
    statement_timeout: float | None = None
    application_name: str = "dbcli"
    pool_min_size: int = 1
    pool_max_size: int = 4


@dataclass
class MongoConfig:
    uri: str | None = None
    database: str = "user_analytics"
    embedded: bool = False
    binary: str | None = None
    data_dir: str = ""
    password_file: str | None = None
    connect_timeout: float = 5.0
    write_concern: str | int | None = None
    read_preference: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.uri) or self.embedded


@dataclass
class Config:
    profile: str
    source: Path | None
    postgres: PostgresConfig
    mongo: MongoConfig
    # every other section, validated against SPEC, as plain mappings
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value of ``section.key[.sub]`` from the non-connection sections."""
        node: Any = self.sections
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def data_dir(self) -> Path:
        return data_home() / _safe_name(self.profile)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("DBCLI_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from $DBCLI_CONFIG)")
        return path
    for candidate in (Path("dbcli.yaml"), _xdg("XDG_CONFIG_HOME", ".config") / "dbcli" / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | None = None, profile: str | None = None) -> Config:
    source = find_config_file(path)
    raw: dict[str, Any] = _read_yaml(source) if source else {}
    for key in raw:
        if key not in TOP_LEVEL:
            raise _unknown(key, key, TOP_LEVEL)
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("profiles: must be a mapping of profile names to settings")
    shared = {k: v for k, v in raw.items() if k in SPEC}
    name = profile or os.environ.get("DBCLI_PROFILE") or raw.get("default_profile")
    if name is None:
        name = next(iter(profiles), "default" if source else BUILTIN_PROFILE)
    if profiles and name not in profiles:
        raise ConfigError(f"unknown profile {name!r}", hint=_suggest(str(name), profiles))
    if not profiles and name not in ("default", BUILTIN_PROFILE):
        raise ConfigError(f"unknown profile {name!r} (the configuration defines no profiles)")
    chosen = profiles.get(name) or {}
    if not isinstance(chosen, dict):
        raise ConfigError(f"profiles.{name}: must be a mapping")
    merged = _merge(shared, chosen)
    _validate(merged, SPEC, f"profiles.{name}." if profiles else "")
    merged = _interpolate(merged, f"profiles.{name}" if profiles else "")
    return _build(str(name), source, merged)


def _read_yaml(path: Path) -> dict[str, Any]:
    from dbcli.config import yaml_cache

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
    import yaml

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
        return _VAR.sub(lambda m: m[2] or "", value) if isinstance(value, str) else value

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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _suggest(word: str, choices: Any) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def _unknown(path: str, key: str, choices: Any) -> ConfigError:
    return ConfigError(f"unknown key {path!r}", hint=_suggest(key, choices))


def _validate(data: dict[str, Any], spec: dict[str, Any], prefix: str) -> None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in spec:
            raise _unknown(path, key, spec)
        expected = spec[key]
        if isinstance(expected, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: must be a mapping")
            _validate(value, expected, path + ".")
        elif value is not None and not _type_ok(value, expected):
            names = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join(_TYPE_NAMES[t] for t in names)
            raise ConfigError(f"{path}: must be {wanted}, got {value!r}"[:200])


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping"}


def _type_ok(value: Any, expected: Any) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if isinstance(value, str) and "${" in value:
            return True  # checked again after interpolation
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t in (str, bool, dict) and isinstance(value, t):
            return True
    return False


def _interpolate(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            got = os.environ.get(var)
            if got is None or (got == "" and default is not None):
                if default is None:
                    raise ConfigError(f"environment variable {var} is not set (used by {path})",
                                      hint=f"export {var}, or write ${{{var}:-default}}")
                return default
            return got
        return _VAR.sub(repl, value)
    return value


def _coerce(value: Any, kind: type, path: str) -> Any:
    """Values interpolated from the environment arrive as strings."""
    if value is None or not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return kind(value)
    except ValueError:
        raise ConfigError(f"{path}: must be {_TYPE_NAMES[kind]}, got {value!r}") from None


def _build(profile: str, source: Path | None, merged: dict[str, Any]) -> Config:
    pg_raw = dict(merged.get("postgres") or {})
    pool = pg_raw.pop("pool", None) or {}
    fields = {k: _coerce(v, SPEC["postgres"][k], f"postgres.{k}") for k, v in pg_raw.items()}
    explicit_server = any(fields.get(k) for k in ("dsn", "host"))
    if "embedded" not in fields or fields["embedded"] is None:
        fields["embedded"] = not explicit_server
    if fields["embedded"] and explicit_server:
        raise ConfigError("postgres.embedded is true but postgres.dsn/host is set too",
                          hint="use one or the other")
    pg = PostgresConfig(**{k: v for k, v in fields.items() if v is not None})
    pg.pool_min_size = _coerce(pool.get("min_size", pg.pool_min_size), int, "postgres.pool.min_size")
    pg.pool_max_size = _coerce(pool.get("max_size", pg.pool_max_size), int, "postgres.pool.max_size")
    if pg.pool_min_size > pg.pool_max_size:
        raise ConfigError("postgres.pool.min_size is larger than postgres.pool.max_size")
    base = data_home() / _safe_name(profile)
    if not pg.data_dir:
        pg.data_dir = str(base / "postgres")
    pg.data_dir = str(Path(pg.data_dir).expanduser())
    if pg.password_file and pg.password is None:
        pg.password = _read_secret(pg.password_file, "postgres.password_file")

    mg_raw = dict(merged.get("mongo") or {})
    mfields = {}
    for k, v in mg_raw.items():
        kind = SPEC["mongo"][k]
        mfields[k] = v if isinstance(kind, tuple) else _coerce(v, kind, f"mongo.{k}")
    mongo = MongoConfig(**{k: v for k, v in mfields.items() if v is not None})
    if mongo.embedded and mongo.uri:
        raise ConfigError("mongo.embedded is true but mongo.uri is set too", hint="use one or the other")
    if not mongo.data_dir:
        mongo.data_dir = str(base / "mongo")
    mongo.data_dir = str(Path(mongo.data_dir).expanduser())
    if mongo.password_file and mongo.uri:
        mongo.uri = _with_password(mongo.uri, _read_secret(mongo.password_file, "mongo.password_file"))

    sections = {k: v for k, v in merged.items() if k not in ("postgres", "mongo") and v is not None}
    return Config(profile=profile, source=source, postgres=pg, mongo=mongo, sections=sections)


def _read_secret(path: str, key: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None


def _with_password(uri: str, password: str) -> str:
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.username:
        raise ConfigError("mongo.password_file is set but mongo.uri names no user")
    host = parts.hostname or ""
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    if "," in parts.netloc:  # replica-set host lists: keep them as written
        netloc = f"{parts.username}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc))


# ---- redaction -------------------------------------------------------------------------------

# Patterns as text: re compiles (and caches) them on first use, so a command that redacts
# nothing does not pay for compiling them at start-up.
_URL_PASSWORD = r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)"
_KV_PASSWORD = r"(?i)(?P<pre>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)"
_QUERY_SECRET = r"(?i)(?P<pre>[?&](?:password|sslpassword|pass|secret|key)=)(?P<pw>[^&\s]+)"


def redact_text(text: str) -> str:
    """Mask passwords in URLs, libpq key=value strings and query parameters."""
    text = re.sub(_URL_PASSWORD, lambda m: f"{m['pre']}***{m['post']}" if m["pw"] else m[0], text)
    text = re.sub(_KV_PASSWORD, lambda m: f"{m['pre']}***", text)
    return re.sub(_QUERY_SECRET, lambda m: f"{m['pre']}***", text)


def redact(value: Any, key: str = "") -> Any:
    if key in SECRET_KEYS and isinstance(value, dict):  # e.g. encryption.previous_keys: {id: key}
        return {k: "***" if v not in (None, "") else v for k, v in value.items()}
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key in SECRET_KEYS and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return redact_text(value)
    return value


def effective(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as a mapping, secrets masked."""
    from dataclasses import asdict

    pg = asdict(cfg.postgres)
    pg["pool"] = {"min_size": pg.pop("pool_min_size"), "max_size": pg.pop("pool_max_size")}
    out: dict[str, Any] = {
        "profile": cfg.profile,
        "source": str(cfg.source) if cfg.source else None,
        "postgres": pg,
        "mongo": asdict(cfg.mongo),
    }
    out.update(cfg.sections)
    return redact(out)
