"""Documents checked against their collection's declared JSON Schema, fast enough for bulk imports.

FerretDB enforces no validators, so every dbcli writer checks documents client-side first.
``jsonschema`` (through ``CollectionSpec.problem``) stays the one authority and writes the message
users see (field path and reason), but it costs about 85 µs per document, more than FerretDB needs
to store one. So each document goes first through ``fastjsonschema`` (about 3 µs: it compiles the
schema to a Python function once per process), on the same JSON view of the document
(``schema.files.json_value``) with the same draft (7); only a document it rejects is handed to
``jsonschema``, whose answer is final either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from dbcli.config.model import Config
from dbcli.schema.files import CollectionSpec, json_value, validator_for

# ``doc -> the first violation as one line, or None``
Problem = Callable[[dict[str, Any]], str | None]


@lru_cache(maxsize=64)
def _compiled(schema_text: str) -> Callable[[Any], Any] | None:
    import fastjsonschema  # see checker

    try:
        # no defaults filled in, formats not asserted: as jsonschema's Draft7Validator
        return fastjsonschema.compile(json.loads(schema_text), use_default=False, use_formats=False)
    except fastjsonschema.JsonSchemaDefinitionException:
        return None  # a schema it cannot compile: jsonschema alone


def checker(spec: CollectionSpec) -> Problem:
    """The check of documents against ``spec``'s JSON Schema (none: every document passes)."""
    if not spec.json_schema:
        return spec.problem
    # 7-15 ms to import (measured): only writers get here, not find, count or list
    import fastjsonschema

    fast = _compiled(json.dumps(spec.json_schema, sort_keys=True))
    if fast is None:
        return spec.problem

    def problem(doc: dict[str, Any]) -> str | None:
        try:
            fast(json_value(doc))
        except fastjsonschema.JsonSchemaValueException:
            return spec.problem(doc)
        return None
    return problem


def schema_checker(cfg: Config, name: str) -> Problem | None:
    """The check for collection ``name``, or None when the schema directory declares no JSON Schema."""
    spec = validator_for(cfg, name)
    if spec is None or not spec.json_schema:
        return None
    return checker(spec)
