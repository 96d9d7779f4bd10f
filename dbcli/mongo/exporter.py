"""Streaming export of a collection: JSONL, a JSON array, or CSV with nested fields as dotted columns.

Export iterates a cursor (memory stays flat), decrypting configured fields on the way out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from bson import json_util

from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.errors import UsageError
from dbcli.mongo.collections import existing
from dbcli.mongo.connection import session, translated
from dbcli.mongo.query import ABSENT, check_query, dotted
from dbcli.output import JSON_SEPARATORS, cell_text

EXPORT_FORMATS = ("jsonl", "json", "csv")
CSV_SAMPLE = 1000


@dataclass
class ExportResult:
    collection: str
    documents: int = 0
    columns: list[str] = field(default_factory=list)
    dropped_fields: set[str] = field(default_factory=set)  # CSV: fields first seen after the sample
    notices: list[str] = field(default_factory=list)  # e.g. values shown masked for want of a key


def export_documents(cfg: Config, name: str, out: IO[str], *, filter_doc: dict[str, Any] | None = None,
                     fmt: str = "jsonl", fields: list[str] | None = None, canonical: bool = False,
                     sort: list[tuple[str, int]] | None = None, limit: int = 0) -> ExportResult:
    """Stream the matching documents to ``out``; returns what was written."""
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    if canonical and fmt == "csv":
        raise UsageError("--canonical applies to json and jsonl exports")
    opts = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    enc = Encryptor.from_config(cfg)
    check_query(enc, name, filter_doc, sort)
    decrypt = enc is not None and bool(enc.fields_for(name))
    result = ExportResult(collection=name)
    projection = None
    if fields and fmt != "csv":
        projection = {f: 1 for f in fields}
        if "_id" not in fields:
            projection["_id"] = 0
    with session(cfg) as db:
        existing(db, name)
        cursor = db[name].find(filter_doc or {}, projection, sort=sort, limit=limit, batch_size=1000)
        with translated(filter_doc):
            docs: Iterator[dict[str, Any]] = (enc.decrypt_doc(name, d) for d in cursor) if decrypt and enc \
                else iter(cursor)
            if fmt == "csv":
                _csv(docs, out, fields, result)
            else:
                def dump(d: dict[str, Any]) -> str:
                    return json_util.dumps(d, json_options=opts, ensure_ascii=False, separators=JSON_SEPARATORS)
                if fmt == "jsonl":
                    for d in docs:
                        out.write(dump(d) + "\n")
                        result.documents += 1
                else:
                    out.write("[")
                    for d in docs:
                        out.write(",\n" if result.documents else "\n")
                        out.write(dump(d))
                        result.documents += 1
                    out.write("\n]\n" if result.documents else "]\n")
    out.flush()
    if enc is not None:
        result.notices = enc.notices()
    return result


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested documents as dotted keys; arrays stay whole (one cell, as JSON)."""
    flat: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def _csv(docs: Iterator[dict[str, Any]], out: IO[str], fields: list[str] | None, result: ExportResult) -> None:
    writer = csv.writer(out, lineterminator="\n")
    if fields:
        columns = list(fields)
        head: list[dict[str, Any]] = []
    else:
        # columns: the union of the flattened keys of the first documents, in order of appearance
        head = []
        for d in docs:
            head.append(flatten(d))
            if len(head) >= CSV_SAMPLE:
                break
        seen: dict[str, None] = {}
        for row in head:
            for k in row:
                seen.setdefault(k, None)
        columns = list(seen)
    result.columns = columns
    writer.writerow(columns)
    known = set(columns)

    def cell(row: dict[str, Any], doc: dict[str, Any] | None, col: str) -> str:
        if col in row:
            return cell_text(row[col])
        if doc is not None:  # --fields may name a whole sub-document
            value = dotted(doc, col)
            if value is not ABSENT:
                return cell_text(value)
        return ""

    for row in head:
        writer.writerow([cell(row, None, c) for c in columns])
        result.documents += 1
    for d in docs:
        row = flatten(d)
        if not fields:
            result.dropped_fields.update(k for k in row if k not in known)
        writer.writerow([cell(row, d, c) for c in columns])
        result.documents += 1
