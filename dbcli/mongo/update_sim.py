"""Client-side evaluation of MongoDB update operators, to validate an update before it is sent.

FerretDB enforces no JSON Schema, so ``dbcli collection update`` on a collection with a declared
schema computes each post-update document here and validates it; only then does the server apply
the same update. The common operators are covered; anything else (positional paths, ``$pull``
with a condition, ``$push`` with ``$sort``) is refused on such collections rather than guessed.

``encrypt_update`` rewrites an update so that values written to encrypted fields are encrypted.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from bson import Timestamp

from dbcli.encryption.fields import Encryptor
from dbcli.errors import InvalidInputError

SUPPORTED = ("$set", "$unset", "$inc", "$mul", "$min", "$max", "$rename", "$setOnInsert", "$push",
             "$addToSet", "$pull", "$pop", "$currentDate")
_MISSING = object()


class Unsupported(InvalidInputError):
    pass


def _unsupported(what: str) -> Unsupported:
    return Unsupported(f"{what} cannot be checked against the collection's schema before writing",
                       hint="use $set, $unset, $inc, $mul, $min, $max, $rename, $push, $addToSet, $pull, "
                            "$pop or $currentDate on plain paths")


def apply(doc: dict[str, Any], update: dict[str, Any], *, inserting: bool = False,
          now: dt.datetime | None = None) -> dict[str, Any]:
    """The document as the server would leave it after ``update``."""
    out = copy.deepcopy(doc)
    moment = now or dt.datetime.now(dt.UTC)
    for op, spec in update.items():
        if op not in SUPPORTED:
            raise _unsupported(op)
        if op == "$setOnInsert" and not inserting:
            continue
        for path, arg in spec.items():
            parts = _parts(path)
            if op in ("$set", "$setOnInsert"):
                _put(out, parts, copy.deepcopy(arg))
            elif op == "$unset":
                _remove(out, parts)
            elif op in ("$inc", "$mul"):
                _arith(out, parts, arg, op)
            elif op in ("$min", "$max"):
                _minmax(out, parts, arg, op)
            elif op == "$rename":
                if not isinstance(arg, str):
                    raise InvalidInputError(f"$rename of {path!r}: the new name must be a string")
                value = _get(out, parts)
                if value is not _MISSING:
                    _remove(out, parts)
                    _put(out, _parts(arg), value)
            elif op == "$push":
                _push(out, parts, arg)
            elif op == "$addToSet":
                items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                current = _array(out, parts, op)
                current.extend(copy.deepcopy(x) for x in items if x not in current)
            elif op == "$pull":
                if isinstance(arg, dict):
                    raise _unsupported("$pull with a condition")
                current = _get(out, parts)
                if isinstance(current, list):
                    current[:] = [x for x in current if x != arg]
            elif op == "$pop":
                current = _get(out, parts)
                if isinstance(current, list) and current:
                    current.pop(0 if arg == -1 else -1)
            elif op == "$currentDate":
                if isinstance(arg, dict) and arg.get("$type") == "timestamp":
                    _put(out, parts, Timestamp(int(moment.timestamp()), 1))
                else:
                    _put(out, parts, moment)
    return out


def upsert_base(filter_doc: dict[str, Any]) -> dict[str, Any]:
    """The fields an upsert copies from its filter: equalities (also inside ``$and``)."""
    base: dict[str, Any] = {}
    for key, value in filter_doc.items():
        if key == "$and" and isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    for k, v in upsert_base(sub).items():
                        _put(base, _parts(k), v)
        elif key.startswith("$"):
            continue
        elif isinstance(value, dict) and any(str(k).startswith("$") for k in value):
            if "$eq" in value:
                _put(base, _parts(key), copy.deepcopy(value["$eq"]))
        else:
            _put(base, _parts(key), copy.deepcopy(value))
    return base


def _parts(path: str) -> list[str]:
    parts = path.split(".")
    if not all(parts) or any(p.startswith("$") for p in parts):
        raise _unsupported(f"the path {path!r}")
    return parts


def _get(doc: Any, parts: list[str]) -> Any:
    node = doc
    for p in parts:
        if isinstance(node, dict):
            node = node.get(p, _MISSING)
        elif isinstance(node, list) and p.isdigit():
            node = node[int(p)] if int(p) < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _parent(doc: dict[str, Any], parts: list[str], create: bool) -> Any:
    node: Any = doc
    for p in parts[:-1]:
        if isinstance(node, dict):
            if p not in node:
                if not create:
                    return None
                node[p] = {}
            node = node[p]
        elif isinstance(node, list) and p.isdigit():
            i = int(p)
            if i >= len(node):
                if not create:
                    return None
                raise _unsupported(f"a path past the end of an array ({'.'.join(parts)})")
            node = node[i]
        else:
            if not create:
                return None
            raise InvalidInputError(f"cannot create field {p!r} inside a non-document value "
                                    f"({'.'.join(parts)})")
    return node


def _put(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    parent = _parent(doc, parts, create=True)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last.isdigit():
        i = int(last)
        if i < len(parent):
            parent[i] = value
        else:
            parent.extend([None] * (i - len(parent)))
            parent.append(value)
    else:
        raise InvalidInputError(f"cannot set {'.'.join(parts)!r} inside a non-document value")


def _remove(doc: dict[str, Any], parts: list[str]) -> None:
    parent = _parent(doc, parts, create=False)
    last = parts[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = None  # $unset of an array element leaves null, as MongoDB does


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _arith(doc: dict[str, Any], parts: list[str], arg: Any, op: str) -> None:
    if not _number(arg):
        raise InvalidInputError(f"{op} of {'.'.join(parts)!r} needs a number")
    current = _get(doc, parts)
    if current is _MISSING:
        _put(doc, parts, arg if op == "$inc" else 0 * arg)
    elif _number(current):
        _put(doc, parts, current + arg if op == "$inc" else current * arg)
    else:
        raise InvalidInputError(f"{op} of {'.'.join(parts)!r}: the field holds a non-numeric value")


def _minmax(doc: dict[str, Any], parts: list[str], arg: Any, op: str) -> None:
    current = _get(doc, parts)
    if current is _MISSING:
        _put(doc, parts, copy.deepcopy(arg))
        return
    try:
        replace = arg < current if op == "$min" else arg > current
    except TypeError:
        raise _unsupported(f"{op} between values of different types") from None
    if replace:
        _put(doc, parts, copy.deepcopy(arg))


def _array(doc: dict[str, Any], parts: list[str], op: str) -> list[Any]:
    current = _get(doc, parts)
    if current is _MISSING:
        current = []
        _put(doc, parts, current)
    if not isinstance(current, list):
        raise InvalidInputError(f"{op} of {'.'.join(parts)!r}: the field is not an array")
    return current


def _push(doc: dict[str, Any], parts: list[str], arg: Any) -> None:
    current = _array(doc, parts, "$push")
    if isinstance(arg, dict) and "$each" in arg:
        if set(arg) - {"$each", "$position", "$slice"}:
            raise _unsupported("$push with " + ", ".join(sorted(set(arg) - {"$each", "$position", "$slice"})))
        items = copy.deepcopy(list(arg["$each"]))
        pos = arg.get("$position")
        if pos is None:
            current.extend(items)
        else:
            pos = int(pos)
            pos = max(0, len(current) + pos) if pos < 0 else pos
            current[pos:pos] = items
        if "$slice" in arg:
            n = int(arg["$slice"])
            current[:] = current[:n] if n >= 0 else current[n:]
    else:
        current.append(copy.deepcopy(arg))


# ---- encryption of update documents -----------------------------------------------------------

def encrypt_update(enc: Encryptor, collection: str, update: dict[str, Any]) -> dict[str, Any]:
    """``update`` with the values it writes to encrypted fields encrypted.

    ``$set``/``$setOnInsert`` of an encrypted field (or of a parent document) and ``$push`` onto an
    encrypted array are encrypted; anything that would compute on a ciphertext ($inc, $min,
    $addToSet, $rename...) or write inside one is refused.
    """
    fields = enc.fields_for(collection)
    if not fields:
        return update
    out: dict[str, Any] = {}
    for op, spec in update.items():
        new_spec: dict[str, Any] = {}
        for path, arg in spec.items():
            targets = [path, arg] if op == "$rename" and isinstance(arg, str) else [path]
            hit = _touches(fields, targets)
            if hit is None or op == "$unset":
                new_spec[path] = arg
                continue
            inside = next((f for f in fields if path.startswith(f + ".")), None)
            if inside is not None:
                raise InvalidInputError(f"cannot update inside encrypted field {inside!r} ({path})")
            if op in ("$set", "$setOnInsert"):
                new_spec[path] = enc.encrypt_path_value(collection, path, arg)
            elif op == "$push" and path in fields:
                if isinstance(arg, dict) and "$each" in arg:
                    new_spec[path] = {**arg, "$each": [enc.encrypt_value("collection", collection, path, v)
                                                       for v in arg["$each"]]}
                else:
                    new_spec[path] = enc.encrypt_value("collection", collection, path, arg)
            else:
                raise InvalidInputError(f"{op} cannot be applied to encrypted field {hit!r}")
        out[op] = new_spec
    return out


def _touches(fields: set[str], paths: list[str]) -> str | None:
    for path in paths:
        for f in fields:
            if f == path or f.startswith(path + ".") or path.startswith(f + "."):
                return f
    return None
