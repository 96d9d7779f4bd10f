"""Report definitions: the file format, loading (built-in + ``reports.dir``) and typed parameters.

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
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dbcli.config.load import Config
from dbcli.errors import ConfigError, DbcliError, InvalidInputError, NotFoundError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
EXTENSIONS = (".yaml", ".yml", ".json")
TARGETS = ("postgres", "mongo")
PARAM_TYPES = ("int", "float", "decimal", "str", "date", "datetime", "bool")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# psycopg named placeholders; any other % must be doubled
PLACEHOLDER = re.compile(r"%\((?P<name>[^)]*)\)s|%%|%")
POST_STEPS = ("rollup", "ratio", "sort", "limit", "funnel")
WRITING_STAGES = ("$out", "$merge")
_RELATIVE = r"^(?P<base>today|now)\s*(?:(?P<sign>[+-])\s*(?P<n>\d+)\s*(?P<unit>[dhm]))?$"  # compiled on use
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = None
    required: bool = False
    min: Any = None
    max: Any = None
    choices: tuple[Any, ...] | None = None
    description: str = ""
    not_before: str | None = None  # another parameter this one may not precede (to >= from)

    def summary(self) -> str:
        """``user_id:int`` / ``limit:int=10`` / ``from:date=today-30d``."""
        text = f"{self.name}:{self.type}"
        if self.required:
            return text + " (required)"
        if self.default is not None:
            text += f"={_show(self.default)}"
        return text

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required,
                               "default": _show(self.default) if self.default is not None else None}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = _show(getattr(self, key))
        if self.choices is not None:
            out["choices"] = [_show(c) for c in self.choices]
        if self.not_before:
            out["not_before"] = self.not_before
        if self.description:
            out["description"] = self.description
        return out

    def convert(self, raw: Any, report: str, today: dt.date | None = None) -> Any:
        """A CLI string or a YAML value as this parameter's type; InvalidInputError names it."""
        def bad(expected: str) -> InvalidInputError:
            return InvalidInputError(f"report {report!r}: parameter {self.name!r} must be {expected}, "
                                     f"got {_show(raw)!r}"[:300])
        value = _convert(self.type, raw, today, bad)
        if self.choices is not None and value not in self.choices:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be one of "
                                    f"{', '.join(_show(c) for c in self.choices)}, got {_show(raw)!r}")
        if self.min is not None and value < self.min:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be >= "
                                    f"{_show(self.min)}, got {_show(value)}")
        if self.max is not None and value > self.max:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be <= "
                                    f"{_show(self.max)}, got {_show(value)}")
        return value


def _convert(kind: str, raw: Any, today: dt.date | None, bad: Any) -> Any:
    text = raw.strip() if isinstance(raw, str) else None
    if kind == "str":
        if isinstance(raw, str):
            return raw
        if isinstance(raw, bool) or raw is None or isinstance(raw, dict | list):
            raise bad("a string")
        return str(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if text is not None and text.lower() in _TRUE:
            return True
        if text is not None and text.lower() in _FALSE:
            return False
        raise bad("true or false")
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if text is not None and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise bad("an integer")
    if kind == "float":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        try:
            if text is not None and text.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity"):
                return float(text)
        except ValueError:
            pass
        raise bad("a number")
    if kind == "decimal":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return Decimal(raw)
        if isinstance(raw, float):
            return Decimal(repr(raw))
        try:
            if text is not None:
                value = Decimal(text)
                if value.is_finite():
                    return value
        except InvalidOperation:
            pass
        raise bad("a decimal number")
    if kind == "date":
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            return raw
        if text is not None:
            rel = _relative(text, today)
            if isinstance(rel, dt.date) and not isinstance(rel, dt.datetime):
                return rel
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
        raise bad("a date (YYYY-MM-DD, today, today-7d)")
    if kind == "datetime":
        if isinstance(raw, dt.datetime):
            return raw if raw.tzinfo else raw.replace(tzinfo=dt.UTC)
        if isinstance(raw, dt.date):
            return dt.datetime(raw.year, raw.month, raw.day, tzinfo=dt.UTC)
        if text is not None:
            rel = _relative(text, today)
            if isinstance(rel, dt.datetime):
                return rel
            try:
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            except ValueError:
                pass
        raise bad("a timestamp (ISO-8601, now, now-2h)")
    raise bad(f"a {kind}")


def _relative(text: str, today: dt.date | None) -> dt.date | dt.datetime | None:
    """``today``, ``today-30d``, ``now-2h``: relative dates are what cron jobs want (UTC)."""
    m = re.match(_RELATIVE, text.lower())
    if not m:
        return None
    n = int(m["n"] or 0) * (-1 if m["sign"] == "-" else 1)
    unit = m["unit"] or "d"
    if m["base"] == "today":
        if unit != "d":
            return None
        return (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=n)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return now + {"d": dt.timedelta(days=n), "h": dt.timedelta(hours=n), "m": dt.timedelta(minutes=n)}[unit]


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return str(v)


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
        import hashlib  # only when caching: OpenSSL's start-up costs ~9 ms

        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def source_names(self) -> list[str]:
        from dbcli.cache.store import source_names

        return source_names(self.target, self.sources)

    def resolve(self, given: Mapping[str, Any], today: dt.date | None = None) -> dict[str, Any]:
        """Typed values for every parameter: given ones converted, the rest defaulted (exit 5 naming it)."""
        known = [p.name for p in self.params]
        for name in given:
            if name not in known:
                import difflib

                hint = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
                raise InvalidInputError(
                    f"report {self.name!r} has no parameter {name!r}"
                    + (f" (parameters: {', '.join(known)})" if known else " (it takes none)"),
                    hint=f"did you mean {hint[0]!r}?" if hint else None)
        values: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                values[p.name] = p.convert(given[p.name], self.name, today)
            elif p.required:
                raise InvalidInputError(f"report {self.name!r}: parameter {p.name!r} is required",
                                        hint=f"--param {p.name}=VALUE")
            elif p.default is not None:
                values[p.name] = p.convert(p.default, self.name, today)
            else:
                values[p.name] = None
        for p in self.params:
            if p.not_before and values[p.name] is not None and values[p.not_before] is not None \
                    and values[p.name] < values[p.not_before]:
                raise InvalidInputError(f"report {self.name!r}: parameter {p.name!r} ({_show(values[p.name])}) "
                                        f"is before {p.not_before!r} ({_show(values[p.not_before])})")
        return values

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


# ---- loading -------------------------------------------------------------------------------------

def user_dir(cfg: Config) -> Path | None:
    configured = cfg.get("reports.dir")
    if not configured:
        return None
    path = Path(configured).expanduser()
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
    import difflib

    close = difflib.get_close_matches(name, [*builtin, *user], n=1, cutoff=0.5)
    raise NotFoundError(f"unknown report {name!r}",
                        hint=f"did you mean {close[0]!r}?" if close else "dbcli report list shows them")


def load_file(path: Path, *, builtin: bool) -> Report:
    from dbcli.config import yaml_cache

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read report file {path}: {e.strerror}") from None
    data = yaml_cache.load(path, text, "report", lambda t: _parse_yaml(path, t))
    return parse(data, path, builtin=builtin, text=text)


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader (the C one when built)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed report file ({getattr(e, 'problem', None) or e})") from None


def parse(data: Any, path: Path, *, builtin: bool, text: str = "") -> Report:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    if not isinstance(data, dict):
        raise fail("a report file must be a mapping")
    allowed = {"name", "description", "target", "params", "sources", "sql", "collection", "pipeline",
               "post", "id", "flatten", "columns"}
    unknown = sorted(set(data) - allowed)
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
    params = tuple(_parse_param(p, fail) for p in (data.get("params") or []))
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
        sql = data.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise fail("a postgres report needs sql")
        for key in ("collection", "pipeline", "post", "id", "flatten", "columns"):
            if key in data:
                raise fail(f"{key!r} is for mongo reports")
        _check_placeholders(sql, set(names), fail)
        return Report(**common, sql=sql.strip().rstrip(";").strip())
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
    post = data.get("post") or []
    if not isinstance(post, list) or not all(isinstance(s, dict) and len(s) == 1 and next(iter(s)) in POST_STEPS
                                             for s in post):
        raise fail(f"post must be a list of one-key steps among {', '.join(POST_STEPS)}")
    used = _param_refs(pipeline) | _param_refs(post)
    undeclared = sorted(used - set(names))
    if undeclared:
        raise fail(f"{{$param: {undeclared[0]}}} is not a declared parameter")
    columns = data.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise fail("columns must be a list of names")
    id_field = data.get("id")
    if id_field is not None and not isinstance(id_field, str):
        raise fail("id must be a column name")
    return Report(**common, collection=collection, pipeline=pipeline, post=post, id_field=id_field,
                  flatten=bool(data.get("flatten", False)), columns=tuple(columns) if columns else None)


def _parse_param(raw: Any, fail: Any) -> Param:
    if not isinstance(raw, dict):
        raise fail("each parameter must be a mapping with name and type")
    unknown = sorted(set(raw) - {"name", "type", "default", "required", "min", "max", "choices", "description",
                                 "not_before"})
    if unknown:
        raise fail(f"parameter key {unknown[0]!r} is not known")
    name, kind = raw.get("name"), raw.get("type", "str")
    if not isinstance(name, str) or not PARAM_NAME.match(name):
        raise fail(f"parameter name {name!r} is not a valid identifier")
    if kind not in PARAM_TYPES:
        raise fail(f"parameter {name!r}: type must be one of {', '.join(PARAM_TYPES)}")
    def typed(key: str, value: Any) -> Any:
        def bad(expected: str) -> ConfigError:
            return fail(f"parameter {name!r}: {key} must be {expected}, got {value!r}"[:300])
        return _convert(kind, value, None, bad)

    choices = raw.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise fail(f"parameter {name!r}: choices must be a list")
    not_before = raw.get("not_before")
    if not_before is not None and (not isinstance(not_before, str) or not_before == name):
        raise fail(f"parameter {name!r}: not_before must name another parameter")
    param = Param(name=name, type=kind, required=bool(raw.get("required", False)),
                  min=typed("min", raw["min"]) if raw.get("min") is not None else None,
                  max=typed("max", raw["max"]) if raw.get("max") is not None else None,
                  choices=tuple(typed("choices", c) for c in choices) if choices is not None else None,
                  description=str(raw.get("description") or ""), not_before=not_before)
    default = raw.get("default")
    if default is not None:
        typed("default", default)  # relative dates (today-30d) are resolved again on every run
        try:
            param.convert(default, "<default>")
        except InvalidInputError:
            raise fail(f"parameter {name!r}: default {_show(default)!r} is outside its min, max or choices") from None
        param = Param(**{**param.__dict__, "default": default})
    return param


def _check_placeholders(sql: str, declared: set[str], fail: Any) -> None:
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
        out = set()
        for v in node:
            out |= _param_refs(v)
        return out
    return set()


def parse_param_args(args: Sequence[str]) -> dict[str, str]:
    """``["user_id=3", "from=2024-01-01"]`` -> mapping; a malformed one exits 5."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"--param {arg!r}: expected KEY=VALUE")
        if key in out:
            raise InvalidInputError(f"--param {key!r} is given twice")
        out[key] = value
    return out


# ---- running -------------------------------------------------------------------------------------

DEFAULT_TIMEOUT = 300.0  # seconds, when reports.timeout is not set


@dataclass
class ReportResult:
    report: str
    columns: list[str]
    rows: list[dict[str, Any]]
    cached: bool = False
    computed_at: float = 0.0  # epoch seconds when the rows were read from the database
    extended: bool = False  # MongoDB rows: render BSON types as Extended JSON


def timeout(cfg: Config) -> float:
    value = cfg.get("reports.timeout")
    return float(value) if value else DEFAULT_TIMEOUT


def run(cfg: Config, report: Report, values: Mapping[str, Any], *, cache: Any = None) -> ReportResult:
    """Run ``report`` with typed ``values``; ``cache`` is a :class:`dbcli.cache.store.ResultCache` or None."""
    import time

    key = None
    if cache is not None:
        key = cache.key(cache_parts(cfg, report, values), report.source_names())
        hit = cache.get(key) if key else None
        if hit is not None:
            columns = hit["columns"]
            return ReportResult(report.name, columns, [dict(zip(columns, r, strict=True)) for r in hit["rows"]],
                                cached=True, computed_at=hit["at"], extended=report.target == "mongo")
    started = time.time()
    if report.target == "postgres":
        columns, rows = run_postgres(cfg, report, values)
    else:
        columns, rows = run_mongo(cfg, report, values)
    if key:
        cache.put(key, {"columns": columns, "rows": [[r.get(c) for c in columns] for r in rows], "at": started})
    return ReportResult(report.name, columns, rows, computed_at=started, extended=report.target == "mongo")


def cache_parts(cfg: Config, report: Report, values: Mapping[str, Any]) -> dict[str, Any]:
    """What a cached result depends on, besides the source versions the cache adds."""
    from dbcli.cache.store import encode

    return {"report": report.name, "digest": report.digest, "profile": cfg.profile,
            "target": target_identity(cfg, report.target),
            "params": encode(dict(sorted(values.items()))).hex()}


def target_identity(cfg: Config, target: str) -> str:
    """The database a report reads, without secrets: two configs both named ``default`` differ here."""
    from dbcli.config.load import redact_text

    if target == "postgres":
        pg = cfg.postgres
        parts = [pg.dsn or "", pg.host or "", str(pg.port or ""), pg.dbname or "", pg.user or "",
                 pg.data_dir if pg.embedded else ""]
    else:
        mg = cfg.mongo
        parts = [mg.uri or "", mg.database, mg.data_dir if mg.embedded else ""]
    return redact_text("|".join(parts))


def mongo_error(report: Report, e: Exception) -> DbcliError:
    """A driver error as a dbcli error, naming the report."""
    from dbcli.mongo import connection as mongo

    err = mongo.translate(e)
    err.message = f"report {report.name!r}: {err.message}"
    return err


def _timeout_error(report: Report, seconds: float) -> DbcliError:
    from dbcli.errors import UnreachableError

    return UnreachableError(f"report {report.name!r} timed out after {seconds:g}s",
                            hint="raise reports.timeout, or narrow the parameters")


def run_postgres(cfg: Config, report: Report, values: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The SQL in a READ ONLY transaction under ``SET LOCAL statement_timeout``; always rolled back."""
    import psycopg

    from dbcli.postgres import connection as postgres

    assert report.sql is not None
    seconds = timeout(cfg)
    conn = postgres.connect(cfg)
    try:
        conn.read_only = True  # psycopg opens the transaction with BEGIN READ ONLY
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(seconds * 1000))}ms",))
            # prepare=True: the extended protocol, which runs exactly one statement. Without it psycopg
            # sends a report without placeholders as a simple query, where 'COMMIT; INSERT ...' would
            # end the read-only transaction and write.
            cur.execute(report.sql.encode(), dict(values), prepare=True)
            if cur.description is None:
                raise ConfigError(f"report {report.name!r}: the sql returns no rows (is it a SELECT?)")
            columns = [d.name for d in cur.description]
            if len(set(columns)) != len(columns):
                dupe = next(c for c in columns if columns.count(c) > 1)
                raise ConfigError(f"report {report.name!r} returns the column {dupe!r} twice",
                                  hint="give the columns distinct aliases")
            rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        conn.rollback()
    except psycopg.Error as e:
        raise _pg_error(e, cfg, report, seconds) from None
    finally:
        conn.close()
    return columns, rows


def _pg_error(e: Exception, cfg: Config, report: Report, seconds: float) -> DbcliError:
    from dbcli.errors import ConflictError
    from dbcli.postgres.connection import translate

    sqlstate = getattr(e, "sqlstate", None)
    if sqlstate == "57014":
        return _timeout_error(report, seconds)
    if sqlstate == "25006":
        return ConflictError(f"report {report.name!r} tried to write: refused by the read-only transaction",
                             sqlstate=sqlstate)
    if sqlstate == "42601" and "multiple commands" in str(e):
        return ConfigError(f"report {report.name!r}: the sql must be a single statement",
                           hint="remove the ';' between statements")
    err = translate(e, cfg)
    err.message = f"report {report.name!r}: {err.message}"
    return err


# ---- MongoDB ---------------------------------------------------------------------------------------

def bson_value(value: Any) -> Any:
    """A typed parameter as a BSON value: dates become 'YYYY-MM-DD' (the stored day keys)."""
    if isinstance(value, Decimal):
        from bson.decimal128 import Decimal128

        return Decimal128(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace every ``{$param: NAME}`` by the value itself: structure in, structure out."""
    if isinstance(node, dict):
        if set(node) == {"$param"}:
            return bson_value(values[str(node["$param"])])
        return {k: substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    return node


def mongo_pipeline(report: Report, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return substitute(report.pipeline or [], values)


def run_mongo(cfg: Config, report: Report, values: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    from pymongo.errors import ExecutionTimeout, PyMongoError

    from dbcli.mongo import connection as mongo

    assert report.collection is not None
    seconds = timeout(cfg)
    pipeline = mongo_pipeline(report, values)
    mc = mongo.client(cfg)
    try:
        coll = mongo.database(cfg, mc)[report.collection]
        docs = coll.aggregate(pipeline, maxTimeMS=max(1, int(seconds * 1000)))
        rows = _shape(docs, report)
        for step in substitute(report.post, values):
            rows = _post_step(step, rows)
        rows = list(rows)
    except ExecutionTimeout:
        raise _timeout_error(report, seconds) from None
    except PyMongoError as e:
        raise mongo_error(report, e) from None
    finally:
        mc.close()
    from dbcli.output import columns_of

    columns = list(report.columns) if report.columns else columns_of(rows)
    return columns, [{c: r.get(c) for c in columns} for r in rows]


def _shape(docs: Any, report: Report) -> Any:
    """``_id`` of a group (a document) becomes columns; a scalar ``_id`` takes the name in ``id``."""
    for doc in docs:
        row = dict(doc)
        if "_id" in row:
            ident = row.pop("_id")
            row = {**ident, **row} if isinstance(ident, dict) else {report.id_field or "_id": ident, **row}
        yield _flatten(row) if report.flatten else row


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sort_key(v: Any) -> tuple[int, Any]:
    # None first, then numbers, then text: a total order over what reports return
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, int | float | Decimal):
        return (1, v)
    return (2, str(v))


def _post_step(step: Mapping[str, Any], rows: Any) -> Any:
    (kind, spec), = step.items()
    if kind == "rollup":
        return _rollup(rows, spec)
    if kind == "ratio":
        return ({**r, **{name: _ratio(r.get(num), r.get(den)) for name, (num, den) in spec.items()}}
                for r in rows)
    if kind == "sort":
        out = list(rows)
        for col, direction in reversed([tuple(s) for s in spec]):
            out.sort(key=lambda r, c=col: _sort_key(r.get(c)), reverse=str(direction).lower() == "desc")
        return out
    if kind == "limit":
        return list(rows)[:int(spec)]
    if kind == "funnel":
        return _funnel(rows, [str(s) for s in spec["steps"]])
    raise ConfigError(f"unknown post step {kind!r}")


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or not den:
        return None
    return round(float(num) / float(den), 2)


def _rollup(rows: Any, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Group rows by ``by``: ``count`` rows per group, ``sum`` columns (what $group cannot do on FerretDB)."""
    by = list(spec["by"])
    count = spec.get("count")
    sums: Mapping[str, str] = spec.get("sum") or {}
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = tuple(r.get(c) for c in by)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = {**dict(zip(by, key, strict=True)), **({count: 0} if count else {}),
                                 **{out: 0 for out in sums}}
        if count:
            acc[count] += 1
        for out, col in sums.items():
            acc[out] += r.get(col) or 0
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k))]


def _funnel(rows: Any, steps: list[str]) -> list[dict[str, Any]]:
    """Rows sorted by user then time: a user reaches step k+1 with an event of that type after step k."""
    reached = [0] * len(steps)
    current_user: Any = object()
    level = 0

    def close(level: int) -> None:
        for i in range(level):
            reached[i] += 1

    for r in rows:
        if r.get("user_id") != current_user:
            close(level)
            current_user, level = r.get("user_id"), 0
        if level < len(steps) and r.get("type") == steps[level]:
            level += 1
    close(level)
    first = reached[0] if reached else 0
    return [{"step": i + 1, "type": t, "users": n, "conversion": round(n / first, 4) if first else None}
            for i, (t, n) in enumerate(zip(steps, reached, strict=True))]


# ---- dbcli demo ---------------------------------------------------------------------------------------

def demo_step(cfg: Config, out: Any) -> None:
    """Three built-in reports on the demo data, one drawn as a bar chart."""
    from dbcli.reports import charts

    wide = {"from": "2000-01-01", "to": "today"}
    steps: list[tuple[str, dict[str, str], str | None]] = [
        ("revenue-by-category", {**wide, "min_revenue": "0"}, "revenue"),
        ("user-orders", {"user_id": "1"}, None),
        ("activity-by-type", wide, None) if cfg.mongo.configured else ("top-customers", {"limit": "5"}, None),
    ]
    for name, given, chart in steps:
        report = get(cfg, name)
        args = " ".join(f"--param {k}={v}" for k, v in given.items())
        out.info(f"$ dbcli report run {name} {args}" + (f" --chart {chart}" if chart else ""))
        result = run(cfg, report, report.resolve(given))
        shown = result.rows[:10]
        out.rows(shown, result.columns, extended=result.extended)
        if len(result.rows) > len(shown):
            out.info(f"({len(result.rows) - len(shown)} more rows)")
        if chart and shown and not out.quiet:
            charts.render(out, shown, result.columns, chart, to_stderr=out.fmt != "table")
