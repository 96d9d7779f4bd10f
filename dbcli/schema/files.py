"""The schema directory: PostgreSQL migration files and MongoDB collection specs.

Shared by ``schema apply`` and by every command that writes documents: where a server cannot
enforce a collection's JSON Schema (FerretDB), dbcli validates documents client-side.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import ConfigError, InvalidInputError

LAYOUT_HINT = ("expected postgres/0001_name.sql ... (migrations) and/or mongo/<collection>.json "
               "(collection specs); see docs/schema.md")
MIGRATION_NAME = re.compile(r"^(\d{4,})_([A-Za-z0-9_.-]+)\.sql$")


def default_dir() -> Path:
    """The sample shop's schema, shipped as package data in ``dbcli/shop/schema``.

    Found among the ``dbcli`` package's resources (an installed wheel has it there too) without
    importing ``dbcli.shop``: the toolkit never imports the shop, it only reads its files.
    """
    return Path(str(resources.files("dbcli") / "shop" / "schema"))


def schema_dir(cfg: Config) -> Path:
    path = cfg.schema.dir.expanduser() if cfg.schema.dir else default_dir()
    if not path.is_dir():
        raise ConfigError(f"schema directory not found: {path}", hint="set schema.dir in the config")
    check_layout(path)
    return path


def check_layout(path: Path) -> None:
    """A schema directory holds ``postgres/`` (migrations) and/or ``mongo/`` (collection specs).

    Files laid out otherwise would be ignored, and ``schema apply`` would call the schema up to
    date: SQL files at the top, or neither folder, is a configuration error instead.
    """
    top_sql = sorted(p.name for p in path.glob("*.sql"))
    if top_sql:
        found = ", ".join(top_sql[:3]) + (f" and {len(top_sql) - 3} more" if len(top_sql) > 3 else "")
        raise ConfigError(f"schema directory {path} has SQL files at its top ({found}): migrations belong "
                          f"in {path / 'postgres'}", hint=LAYOUT_HINT)
    if not (path / "postgres").is_dir() and not (path / "mongo").is_dir():
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        found = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ConfigError(f"schema directory {path} has neither postgres/ nor mongo/ "
                          f"(found: {found or 'nothing'})", hint=LAYOUT_HINT)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: str
    checksum: str  # SHA-256 of the LF-normalised file


def read_migration(path: Path) -> Migration:
    m = MIGRATION_NAME.match(path.name)
    if not m:
        raise ConfigError(f"migration file name must look like 0001_name.sql: {path.name}")
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Migration(version=m.group(1), name=m.group(2), path=path, sql=text, checksum=checksum)


def migrations(cfg: Config) -> list[Migration]:
    pg_dir = schema_dir(cfg) / "postgres"
    if not pg_dir.is_dir():
        return []
    found = [read_migration(p) for p in sorted(pg_dir.glob("*.sql"))]
    versions = [m.version for m in found]
    dupes = sorted({v for v in versions if versions.count(v) > 1})
    if dupes:
        raise ConfigError(f"two migration files share version {dupes[0]} in {pg_dir}")
    return sorted(found, key=lambda m: int(m.version))


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: list[tuple[str, int]]
    unique: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    description: str
    indexes: list[IndexSpec]
    json_schema: dict[str, Any] | None

    def validate(self, doc: dict[str, Any], where: str = "document") -> None:
        """Raise InvalidInputError if ``doc`` violates the collection's JSON Schema."""
        problem = self.problem(doc)
        if problem:
            raise InvalidInputError(f"{where} violates the {self.name} schema: {problem}")

    def problem(self, doc: dict[str, Any]) -> str | None:
        """The first violation as one line, or None."""
        if not self.json_schema:
            return None
        error = next(iter(_validator(self.name, json.dumps(self.json_schema, sort_keys=True))
                          .iter_errors(json_value(doc))), None)
        if error is None:
            return None
        path = ".".join(str(p) for p in error.absolute_path)
        return f"{path + ': ' if path else ''}{error.message}"[:300]


@lru_cache(maxsize=64)
def _validator(name: str, schema_text: str) -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(json.loads(schema_text))


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_value(value: Any) -> Any:
    """BSON values as the JSON types the schema speaks of (dates and ObjectIds become strings).

    Runs once per document written (bulk imports included), hence the exact-type shortcut first.
    """
    if type(value) in _JSON_SCALARS:
        return value
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    kind = type(value).__name__
    if kind == "Decimal128":
        return float(value.to_decimal())
    if kind == "Int64":
        return int(value)
    return str(value)


def collection_specs(cfg: Config) -> dict[str, CollectionSpec]:
    mongo_dir = schema_dir(cfg) / "mongo"
    if not mongo_dir.is_dir():
        return {}
    specs: dict[str, CollectionSpec] = {}
    for path in sorted(mongo_dir.iterdir()):
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            continue
        spec = _load_spec(path)
        if spec.name in specs:
            raise ConfigError(f"collection {spec.name} is declared twice in {mongo_dir}")
        specs[spec.name] = spec
    return specs


def _load_spec(path: Path) -> CollectionSpec:
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ConfigError(f"cannot read collection spec {path}: {e}") from None
    except Exception as e:  # yaml.YAMLError
        raise ConfigError(f"cannot read collection spec {path}: {type(e).__name__}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"collection spec {path} needs a 'name'")
    indexes = []
    for ix in raw.get("indexes") or []:
        keys = [(str(k), int(d)) for k, d in ix["keys"]]
        extra = {k: v for k, v in ix.items() if k not in ("name", "keys", "unique")}
        indexes.append(IndexSpec(name=ix.get("name") or "_".join(f"{k}_{d}" for k, d in keys), keys=keys,
                                 unique=bool(ix.get("unique")), options=extra))
    validator = raw.get("validator") or {}
    json_schema = validator.get("$jsonSchema") if isinstance(validator, dict) else None
    if json_schema is not None:
        from jsonschema import Draft7Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft7Validator.check_schema(json_schema)
        except SchemaError as e:
            raise ConfigError(f"{path}: invalid JSON Schema: {e.message}") from None
    return CollectionSpec(name=raw["name"], description=raw.get("description", ""), indexes=indexes,
                          json_schema=json_schema)


def validator_for(cfg: Config, collection: str) -> CollectionSpec | None:
    """The declared spec of ``collection``, or None when the schema declares none."""
    return collection_specs(cfg).get(collection)
