"""Ad-hoc aggregation pipelines and distinct values on a collection.

A pipeline is Extended JSON (``query.parse_json``), checked before any round trip: stages that
write (``$out``, ``$merge``) need the caller's explicit consent, and server-side JavaScript
(``$function``, ``$where``, ``$accumulator``) is refused outright, at any depth (sub-pipelines of
``$lookup``, ``$facet`` and ``$unionWith`` included), because it runs arbitrary code on the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import ConflictError, InvalidInputError
from dbcli.mongo import connection
from dbcli.mongo.collections import existing, note_write
from dbcli.mongo.connection import session, translated
from dbcli.mongo.documents import stream
from dbcli.mongo.query import check_query, encrypted_path, parse_json

WRITE_STAGES = ("$out", "$merge")
JAVASCRIPT_OPERATORS = ("$function", "$where", "$accumulator")


def read_pipeline(text: str, option: str = "--pipeline") -> list[dict[str, Any]]:
    """``text`` (or the file named by ``@path``) as a pipeline: a JSON array of one-key stage objects."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"{option}: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    value = parse_json(text, option)
    if not isinstance(value, list):
        raise InvalidInputError(f"{option}: expected a JSON array of stages such as [{{\"$match\": {{...}}}}]")
    for i, stage in enumerate(value, 1):
        if not isinstance(stage, dict) or len(stage) != 1 or not next(iter(stage)).startswith("$"):
            raise InvalidInputError(f"{option}: stage {i} must be an object with one $-operator key "
                                    "(for example {\"$match\": {...}})")
    return value


def check_pipeline(pipeline: list[dict[str, Any]], *, write: bool, option: str = "--pipeline") -> list[str]:
    """Refuse JavaScript anywhere and writing stages without ``write``; returns the collections written to."""
    js = _find_key(pipeline, JAVASCRIPT_OPERATORS)
    if js:
        raise InvalidInputError(f"{option}: {js} is refused: it runs JavaScript on the server")
    targets = []
    for stage in _stages(pipeline):
        op, arg = next(iter(stage.items()))
        if op in WRITE_STAGES:
            if not write:
                raise ConflictError(f"{option}: {op} writes to a collection; refused without --write",
                                    hint="pass --write to let the pipeline write")
            targets.append(_target(arg))
    return targets


def _stages(pipeline: list[Any]) -> Iterator[dict[str, Any]]:
    """Every stage, those of nested pipelines ($lookup, $facet, $unionWith) included."""
    for stage in pipeline:
        if not isinstance(stage, dict):
            continue
        yield stage
        for op, arg in stage.items():
            if op == "$facet" and isinstance(arg, dict):
                subs = list(arg.values())
            elif op in ("$lookup", "$unionWith") and isinstance(arg, dict):
                subs = [arg.get("pipeline")]
            else:
                subs = []
            for sub in subs:
                if isinstance(sub, list):
                    yield from _stages(sub)


def _find_key(value: Any, keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` used as a field name anywhere in ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in keys:
                return str(k)
            found = _find_key(v, keys)
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _find_key(v, keys)
            if found:
                return found
    return None


def _target(arg: Any) -> str:
    # {"$out": "name"}, {"$out": {"db": ..., "coll": ...}}, {"$merge": "name"}, {"$merge": {"into": ...}}
    if isinstance(arg, dict):
        arg = arg.get("into", arg.get("coll", ""))
        if isinstance(arg, dict):
            arg = arg.get("coll", "")
    return str(arg)


def aggregate(cfg: Config, name: str, pipeline: list[dict[str, Any]], *, write: bool = False,
              on_done: Callable[[Encryptor | None], None] | None = None) -> Iterator[dict[str, Any]]:
    """The pipeline's output documents (decrypted where they keep encrypted fields), streamed.

    Checked before the round trip; the first batch is fetched before this returns, so a pipeline
    the server rejects fails before anything is printed.
    """
    targets = check_pipeline(pipeline, write=write)
    enc = Encryptor.from_config(cfg)
    for stage in pipeline:
        if "$match" in stage and isinstance(stage["$match"], dict):
            check_query(enc, name, stage["$match"])
    decrypt = enc.decrypt_doc if enc is not None and enc.fields_for(name) else None
    mc = connection.client(cfg)
    try:
        with translated(pipeline):
            db = mc[cfg.mongo.database]
            existing(db, name)
            cursor = db[name].aggregate(pipeline, batchSize=1000)
            first = next(cursor, None)
    except BaseException:
        mc.close()
        raise
    for target in targets:
        note_write(cfg, target)
    return stream(mc, cursor, first, name, decrypt, lambda: on_done(enc) if on_done is not None else None)


def distinct(cfg: Config, name: str, field: str, filter_doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The distinct values of ``field`` among the matching documents, one ``{"value": ...}`` row each."""
    if not field or field.startswith("$") or ".." in field or field.endswith("."):
        raise InvalidInputError(f"invalid field name {field!r}")
    enc = Encryptor.from_config(cfg)
    hit = encrypted_path(enc.fields_for(name), field) if enc is not None else None
    if hit:
        # random nonces: every ciphertext differs, so the server cannot tell equal values apart
        raise InvalidInputError(f"field {name}.{hit} is encrypted: its distinct values cannot be computed")
    check_query(enc, name, filter_doc)
    with session(cfg) as db:
        existing(db, name)
        with translated(filter_doc):
            values = db[name].distinct(field, filter_doc or {})
    return [{"value": v} for v in values]
