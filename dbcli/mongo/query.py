"""What the user asks of a collection: Extended JSON filters, updates, sorts, field lists, names.

Filters, projections, sorts and updates are MongoDB Extended JSON parsed by ``bson.json_util``
(never evaluated), so ObjectIds, dates and decimals survive the trip from the shell. Queries that
would compare ciphertexts (a filter or a sort on an encrypted field) are refused here, before any
round trip.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bson import json_util
from bson.errors import BSONError

from dbcli.encryption.fields import Encryptor
from dbcli.errors import InvalidInputError, UsageError

# tz-aware like the documents pymongo returns (connection.client sets tz_aware), so the two compare
JSON_OPTIONS = json_util.DEFAULT_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=dt.UTC)

# what ``dotted`` returns for a path with no value (``None`` is a value)
ABSENT = object()


@dataclass
class Query:
    filter: dict[str, Any]
    projection: dict[str, Any] | None = None
    sort: list[tuple[str, int]] | None = None
    limit: int = 0
    skip: int = 0


def parse_json(text: str | None, option: str) -> Any:
    """Extended JSON from a command-line option; errors name the option."""
    if text is None:
        return None
    try:
        return json_util.loads(text, json_options=JSON_OPTIONS)
    except (ValueError, TypeError, KeyError, OverflowError, BSONError, ArithmeticError) as e:
        # decimal's errors (a bad $numberDecimal) say nothing readable
        detail = ("invalid $numberDecimal value" if isinstance(e, ArithmeticError)
                  else str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
        raise InvalidInputError(f"{option}: invalid JSON ({detail})") from None


def parse_object(text: str | None, option: str) -> dict[str, Any] | None:
    value = parse_json(text, option)
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"{option}: expected a JSON object")
    return value


def parse_update(text: str, option: str = "--update") -> dict[str, Any]:
    """An update document: every top-level key an update operator (a replacement is refused)."""
    value = parse_json(text, option)
    if not isinstance(value, dict) or not value:
        raise InvalidInputError(f"{option}: expected a JSON object of update operators such as {{\"$set\": ...}}")
    plain = [k for k in value if not k.startswith("$")]
    if plain:
        raise InvalidInputError(f"{option}: use update operators (for example {{\"$set\": {{\"{plain[0]}\": ...}}}}),"
                                " not a replacement document")
    for op, arg in value.items():
        if not isinstance(arg, dict):
            raise InvalidInputError(f"{option}: {op} takes a JSON object of fields")
    return value


def parse_sort(text: str | None, option: str = "--sort") -> list[tuple[str, int]] | None:
    """``{"field": 1, "other": -1}`` as the key list pymongo expects."""
    value = parse_object(text, option)
    if value is None:
        return None
    keys: list[tuple[str, int]] = []
    for field_name, direction in value.items():
        if direction not in (1, -1) or isinstance(direction, bool):
            raise InvalidInputError(f"{option}: direction of {field_name!r} must be 1 or -1")
        keys.append((field_name, int(direction)))
    return keys


def parse_fields(text: str | None) -> list[str] | None:
    if text is None:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise UsageError("--fields: name at least one field")
    for f in fields:
        if f.startswith("$") or ".." in f or f.endswith("."):
            raise UsageError(f"--fields: invalid field name {f!r}")
    return fields


def check_name(name: str) -> str:
    """A collection name MongoDB and FerretDB both accept."""
    if not name or "\x00" in name or "$" in name or name.startswith(("system.", ".")) or len(name) > 200:
        raise InvalidInputError(f"invalid collection name {name!r}")
    return name


def dotted(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of ``doc``, or ``ABSENT``."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


# ---- encrypted fields --------------------------------------------------------------------------

def check_query(enc: Encryptor | None, name: str, filter_doc: dict[str, Any] | None,
                sort: list[tuple[str, int]] | None = None) -> None:
    """Refuse filtering or sorting on an encrypted field (random nonces: ciphertexts never compare).

    ``null`` and ``$exists`` tests stay allowed: they do not look at the value.
    """
    fields = enc.fields_for(name) if enc is not None else set()
    if not fields:
        return
    for key, _ in sort or []:
        hit = encrypted_path(fields, key)
        if hit:
            raise InvalidInputError(f"field {name}.{hit} is encrypted: it cannot be sorted on")
    _check_filter(fields, name, filter_doc or {})


def _check_filter(fields: set[str], name: str, filt: dict[str, Any]) -> None:
    for key, value in filt.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    _check_filter(fields, name, sub)
        elif not key.startswith("$"):
            hit = encrypted_path(fields, key)
            harmless = value is None or (isinstance(value, dict) and set(value) <= {"$exists"})
            if hit and not harmless:
                raise InvalidInputError(f"field {name}.{hit} is encrypted: it cannot be filtered on")


def encrypted_path(fields: set[str], path: str) -> str | None:
    """The encrypted field that ``path`` is, lies under or contains, if any."""
    for f in fields:
        if f == path or f.startswith(path + ".") or path.startswith(f + "."):
            return f
    return None
