"""A fast, conservative pre-check for the portable JSON Schema subset of ``schemas/mongo``.

``jsonschema`` costs about 100 µs per document, more than FerretDB needs to store one, so bulk
imports validate with a predicate compiled from the schema first. The predicate answers True only
when the document is certainly valid; on False (or for a schema using keywords outside the subset)
the caller asks ``CollectionSpec.problem``, which stays the one authority and writes the message.
Values are judged the way ``schema_files._plain`` presents them to ``jsonschema``; BSON types it
turns into strings (dates, ObjectIds) pass only where the schema leaves them unconstrained.

The predicate is generated Python source (one small function per sub-schema), compiled once per
schema. Only numbers and ``repr()`` of names go into the source; strings, patterns and enums are
passed in as bound constants, never pasted as code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# annotations that do not constrain anything
_IGNORED = {"description", "title", "$comment", "examples", "default"}
_HANDLED = {"type", "required", "properties", "additionalProperties", "enum", "minimum", "maximum",
            "minLength", "maxLength", "pattern", "items", "maxItems", "minItems"} | _IGNORED

_TYPE_TESTS = {
    "string": "isinstance(v, str)",
    "number": "(isinstance(v, _NUM) and not isinstance(v, bool))",
    "integer": "((isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()))",
    "object": "isinstance(v, dict)",
    "array": "isinstance(v, _ARR)",
    "boolean": "isinstance(v, bool)",
    "null": "v is None",
}


class _Unsupported(Exception):
    pass


def compile_schema(schema: Any) -> Check | None:
    """A predicate for ``schema``, or None when the schema goes beyond the supported subset."""
    gen = _Generator()
    try:
        root = gen.function(schema)
    except _Unsupported:
        return None
    if root is None:
        return _always
    namespace: dict[str, Any] = {"_NUM": (int, float), "_ARR": (list, tuple),
                                 "_KNOWN": (dict, list, tuple, str, int, float, bool, type(None)), **gen.consts}
    exec(compile("\n".join(gen.lines), "<dbcli.mongo.fastschema>", "exec"), namespace)  # our own generated source
    return namespace[root]  # type: ignore[no-any-return]


def _always(v: Any) -> bool:
    return True


class _Generator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any) -> str:
        name = self._name("K")
        self.consts[name] = value
        return name

    def function(self, schema: Any) -> str | None:
        """Emit ``def fN(v)`` for ``schema``; None when the schema constrains nothing."""
        if schema is True or schema == {}:
            return None
        if not isinstance(schema, dict) or set(schema) - _HANDLED:
            raise _Unsupported
        if not set(schema) - _IGNORED:
            return None
        body: list[str] = []
        if "type" in schema:
            wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not all(w in _TYPE_TESTS for w in wanted):
                raise _Unsupported
            body.append(f"if not ({' or '.join(_TYPE_TESTS[w] for w in wanted)}): return False")
        else:
            # dates, ObjectIds...: only an unconstrained schema is certainly satisfied
            body.append("if not isinstance(v, _KNOWN): return False")
        if "enum" in schema:
            if not all(isinstance(o, str) for o in schema["enum"]):
                raise _Unsupported
            body.append(f"if not (isinstance(v, str) and v in {self.const(frozenset(schema['enum']))}): return False")
        for key, op in (("minimum", ">="), ("maximum", "<=")):
            if key in schema:
                bound = schema[key]
                if not isinstance(bound, int | float) or isinstance(bound, bool):
                    raise _Unsupported
                # "not v >= b" rather than "v < b": NaN fails both bounds, as in jsonschema
                body.append(f"if isinstance(v, _NUM) and not isinstance(v, bool) and not v {op} {bound!r}: "
                            "return False")
        string_checks = []
        if "minLength" in schema:
            string_checks.append(f"len(v) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            string_checks.append(f"len(v) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            string_checks.append(f"{self.const(re.compile(schema['pattern']))}.search(v) is None")
        if string_checks:
            body.append(f"if isinstance(v, str) and ({' or '.join(string_checks)}): return False")
        object_lines = self._object(schema)
        if object_lines:
            body.append("if isinstance(v, dict):")
            body.extend("    " + line for line in object_lines)
        array_lines = self._array(schema)
        if array_lines:
            body.append("if isinstance(v, _ARR):")
            body.extend("    " + line for line in array_lines)
        name = self._name("f")
        self.lines.append(f"def {name}(v):")
        self.lines.extend("    " + line for line in body)
        self.lines.append("    return True")
        return name

    def _object(self, schema: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        required = schema.get("required") or []
        if required:
            lines.append(f"if not {self.const(frozenset(required))} <= v.keys(): return False")
        props = schema.get("properties") or {}
        checks = {key: self.function(sub) for key, sub in props.items()}
        extra = schema.get("additionalProperties", True)
        if extra is False:
            lines.append(f"if not v.keys() <= {self.const(frozenset(props))}: return False")
        elif extra is not True:
            fn = self.function(extra)
            if fn is not None:
                known = self.const(frozenset(props))
                lines.append("for k, x in v.items():")
                lines.append(f"    if k not in {known} and not {fn}(x): return False")
        for key, fn in checks.items():
            if fn is not None:
                lines.append(f"x = v.get({key!r}, v)")  # v itself marks "absent": a dict is never its own value
                lines.append(f"if x is not v and not {fn}(x): return False")
        return lines

    def _array(self, schema: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        if "maxItems" in schema:
            lines.append(f"if len(v) > {int(schema['maxItems'])}: return False")
        if "minItems" in schema:
            lines.append(f"if len(v) < {int(schema['minItems'])}: return False")
        if "items" in schema:
            if not isinstance(schema["items"], dict | bool):
                raise _Unsupported  # tuple-form items
            fn = self.function(schema["items"])
            if fn is not None:
                lines.append("for x in v:")
                lines.append(f"    if not {fn}(x): return False")
        return lines
