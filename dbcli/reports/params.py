"""Typed report parameters: their declaration in a report file, ``--param KEY=VALUE`` arguments, and
conversion of a CLI string or a YAML value to the declared type (relative dates such as ``today-7d``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from dbcli.errors import ConfigError, InvalidInputError, UsageError

PARAM_TYPES = ("int", "float", "decimal", "str", "date", "datetime", "bool")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
PARAM_KEYS = frozenset({"name", "type", "default", "required", "min", "max", "choices", "description", "not_before"})
_RELATIVE = r"^(?P<base>today|now)\s*(?:(?P<sign>[+-])\s*(?P<n>\d+)\s*(?P<unit>[dhm]))?$"  # compiled on use
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")

Fail = Callable[[str], ConfigError]  # turns a problem into an error naming the report file


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
            text += f"={show(self.default)}"
        return text

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required,
                               "default": show(self.default) if self.default is not None else None}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = show(getattr(self, key))
        if self.choices is not None:
            out["choices"] = [show(c) for c in self.choices]
        if self.not_before:
            out["not_before"] = self.not_before
        if self.description:
            out["description"] = self.description
        return out

    def convert(self, raw: Any, report: str, today: dt.date | None = None) -> Any:
        """A CLI string or a YAML value as this parameter's type; InvalidInputError names it."""
        def bad(expected: str) -> InvalidInputError:
            return InvalidInputError(f"report {report!r}: parameter {self.name!r} must be {expected}, "
                                     f"got {show(raw)!r}"[:300])
        value = _convert(self.type, raw, today, bad)
        if self.choices is not None and value not in self.choices:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be one of "
                                    f"{', '.join(show(c) for c in self.choices)}, got {show(raw)!r}")
        if self.min is not None and value < self.min:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be >= "
                                    f"{show(self.min)}, got {show(value)}")
        if self.max is not None and value > self.max:
            raise InvalidInputError(f"report {report!r}: parameter {self.name!r} must be <= "
                                    f"{show(self.max)}, got {show(value)}")
        return value


def _convert(kind: str, raw: Any, today: dt.date | None, bad: Callable[[str], Exception]) -> Any:
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
                number = Decimal(text)
                if number.is_finite():
                    return number
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
                stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
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


def show(v: Any) -> str:
    """A parameter value as the user writes it: ``true``, ``2024-03-01``, ``10``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return str(v)


def declared(raw: Any, fail: Fail) -> Param:
    """One entry of a report file's ``params`` list, its bounds and default checked against its type."""
    if not isinstance(raw, dict):
        raise fail("each parameter must be a mapping with name and type")
    unknown = sorted(set(raw) - PARAM_KEYS)
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
            raise fail(f"parameter {name!r}: default {show(default)!r} is outside its min, max or choices") from None
        param = Param(**{**param.__dict__, "default": default})
    return param


def resolve(report: str, params: Sequence[Param], given: Mapping[str, Any],
            today: dt.date | None = None) -> dict[str, Any]:
    """Typed values for every parameter: given ones converted, the rest defaulted (exit 5 naming it)."""
    known = [p.name for p in params]
    for name in given:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            raise InvalidInputError(
                f"report {report!r} has no parameter {name!r}"
                + (f" (parameters: {', '.join(known)})" if known else " (it takes none)"),
                hint=f"did you mean {hint[0]!r}?" if hint else None)
    values: dict[str, Any] = {}
    for p in params:
        if p.name in given:
            values[p.name] = p.convert(given[p.name], report, today)
        elif p.required:
            raise InvalidInputError(f"report {report!r}: parameter {p.name!r} is required",
                                    hint=f"--param {p.name}=VALUE")
        elif p.default is not None:
            values[p.name] = p.convert(p.default, report, today)
        else:
            values[p.name] = None
    for p in params:
        if p.not_before and values[p.name] is not None and values[p.not_before] is not None \
                and values[p.name] < values[p.not_before]:
            raise InvalidInputError(f"report {report!r}: parameter {p.name!r} ({show(values[p.name])}) "
                                    f"is before {p.not_before!r} ({show(values[p.not_before])})")
    return values


def parse_param_args(args: Sequence[str]) -> dict[str, str]:
    """``["user_id=3", "from=2024-01-01"]`` -> mapping; a malformed one is a usage error (exit 2)."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param {arg!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"--param {key!r} is given twice")
        out[key] = value
    return out
