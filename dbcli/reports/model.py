"""The report file format: a :class:`Report` and the validation of a parsed report file.

A report is one YAML (or JSON) file named after the report::

    name: user-orders            # optional; must equal the file name without extension
    description: ...
    target: postgres             # or mongo
    params:
      - {name: user_id, type: int, required: true, min: 1, description: ...}
    sources: [orders, order_items, products]   # what it reads: drives cache invalidation
    sql: SELECT ... WHERE o.user_id = %(user_id)s

or, for MongoDB, ``collection`` + ``pipeline`` where a value ``{$param: NAME}`` is replaced by
the typed parameter value (a value, never text spliced into a string), plus optional
client-side ``post`` steps (rollup, ratio, sort, limit, funnel), ``id``, ``flatten``, ``columns``.
Finding and reading the files is :mod:`dbcli.reports.registry`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli.errors import ConfigError
from dbcli.reports import params as typed_params
from dbcli.reports import post
from dbcli.reports.params import Fail, Param

TARGETS = ("postgres", "mongo")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# psycopg named placeholders; any other % must be doubled
PLACEHOLDER = re.compile(r"%\((?P<name>[^)]*)\)s|%%|%")
WRITING_STAGES = ("$out", "$merge")
KEYS = frozenset({"name", "description", "target", "params", "sources", "sql", "collection", "pipeline",
                  "post", "id", "flatten", "columns"})
MONGO_ONLY = ("collection", "pipeline", "post", "id", "flatten", "columns")


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    target: str
    params: tuple[Param, ...]
    sources: tuple[str, ...]
    path: Path
    builtin: bool
    text: str = field(default="", repr=False)  # the file's text, for ``digest``
    sql: str | None = None
    collection: str | None = None
    pipeline: list[Any] | None = None
    post: list[dict[str, Any]] = field(default_factory=list)
    id_field: str | None = None
    flatten: bool = False
    columns: tuple[str, ...] | None = None

    @property
    def digest(self) -> str:
        """Of the file text: an edited report never reuses an old cache entry."""
        import hashlib  # only when caching: ~3 ms (OpenSSL) an uncached run does not pay

        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def resolve(self, given: Mapping[str, Any], today: dt.date | None = None) -> dict[str, Any]:
        """Typed values for every parameter: given ones converted, the rest defaulted (exit 5 naming it)."""
        return typed_params.resolve(self.name, self.params, given, today)

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "target": self.target,
            "origin": "built-in" if self.builtin else str(self.path),
            "params": [p.as_record() for p in self.params], "sources": list(self.sources),
        }
        if self.sql is not None:
            out["sql"] = self.sql
        else:
            out["collection"] = self.collection
            out["pipeline"] = self.pipeline
            if self.post:
                out["post"] = self.post
        return out


def parse(data: Any, path: Path, *, builtin: bool, text: str = "") -> Report:
    """A parsed report file as a :class:`Report`; ConfigError (exit 3) names the file and the problem."""
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    if not isinstance(data, dict):
        raise fail("a report file must be a mapping")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME.match(name):
        raise fail("name must be lowercase letters, digits, - and _ (at most 63)")
    if name != path.stem:
        raise fail(f"name {name!r} must match the file name {path.stem!r}")
    target = data.get("target")
    if target not in TARGETS:
        raise fail(f"target must be postgres or mongo, got {target!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise fail("description must be a string")
    params = tuple(typed_params.declared(p, fail) for p in (data.get("params") or []))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise fail("a parameter is declared twice")
    for p in params:
        other = next((q for q in params if q.name == p.not_before), None) if p.not_before else p
        if other is None or other.type != p.type:
            raise fail(f"parameter {p.name!r}: not_before names {p.not_before!r}, which is not a parameter "
                       f"of type {p.type}")
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
        raise fail("sources must list the tables or collections the report reads")
    common: dict[str, Any] = {"name": name, "description": description.strip(), "target": target,
                              "params": params, "sources": tuple(sources), "path": path, "builtin": builtin,
                              "text": text}
    if target == "postgres":
        return _postgres(data, common, set(names), fail)
    return _mongo(data, common, set(names), fail)


def _postgres(data: Mapping[str, Any], common: dict[str, Any], declared: set[str], fail: Fail) -> Report:
    sql = data.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise fail("a postgres report needs sql")
    for key in MONGO_ONLY:
        if key in data:
            raise fail(f"{key!r} is for mongo reports")
    _check_placeholders(sql, declared, fail)
    return Report(**common, sql=sql.strip().rstrip(";").strip())


def _mongo(data: Mapping[str, Any], common: dict[str, Any], declared: set[str], fail: Fail) -> Report:
    if "sql" in data:
        raise fail("a mongo report has a pipeline, not sql")
    collection = data.get("collection")
    if not isinstance(collection, str) or not collection:
        raise fail("a mongo report needs collection")
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, list) or not all(isinstance(s, dict) and len(s) == 1 for s in pipeline):
        raise fail("pipeline must be a list of one-key stages")
    for stage in pipeline:
        if next(iter(stage)) in WRITING_STAGES:
            raise fail(f"stage {next(iter(stage))} writes: reports are read-only")
    steps = data.get("post") or []
    if not isinstance(steps, list) or not all(isinstance(s, dict) and len(s) == 1 and next(iter(s)) in post.STEPS
                                              for s in steps):
        raise fail(f"post must be a list of one-key steps among {', '.join(post.STEPS)}")
    undeclared = sorted((_param_refs(pipeline) | _param_refs(steps)) - declared)
    if undeclared:
        raise fail(f"{{$param: {undeclared[0]}}} is not a declared parameter")
    columns = data.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise fail("columns must be a list of names")
    id_field = data.get("id")
    if id_field is not None and not isinstance(id_field, str):
        raise fail("id must be a column name")
    return Report(**common, collection=collection, pipeline=pipeline, post=steps, id_field=id_field,
                  flatten=bool(data.get("flatten", False)), columns=tuple(columns) if columns else None)


def _check_placeholders(sql: str, declared: set[str], fail: Fail) -> None:
    used: set[str] = set()
    for m in PLACEHOLDER.finditer(sql):
        if m.group(0) == "%":
            raise fail("sql: a literal % must be written %% (placeholders are %(name)s)")
        if m.group("name") is not None:
            used.add(m.group("name"))
    undeclared = sorted(used - declared)
    if undeclared:
        raise fail(f"sql: placeholder %({undeclared[0]})s is not a declared parameter")


def _param_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"$param"}:
            return {str(node["$param"])}
        out: set[str] = set()
        for v in node.values():
            out |= _param_refs(v)
        return out
    if isinstance(node, list):
        found: set[str] = set()
        for v in node:
            found |= _param_refs(v)
        return found
    return set()
