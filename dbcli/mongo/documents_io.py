"""Bulk import and streaming export of MongoDB collections.

Import reads JSON arrays, JSONL or CSV (Extended JSON values) through ``dbcli.readers`` in two
passes. The first parses every document, validates it against the collection's JSON Schema,
encrypts its configured fields and BSON-encodes it into a spool (in memory up to 64 MB, then an
unnamed temporary file: memory stays bounded, stdin works); any malformed or invalid document
stops there with exit 5 and nothing written, unless ``skip_invalid``. The second pass streams the
spool to the server in batches, ``insert_many(ordered=False)`` of raw BSON (nothing parsed or
encoded twice) or bulk upserts on a key field, with one batch on the wire while the next is read.

Export iterates a cursor (memory stays flat) and writes JSONL, a JSON array or CSV with nested
fields flattened to dotted columns.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from dbcli.config.load import Config
from dbcli.errors import InvalidInputError, UsageError
from dbcli.mongo.documents import (
    check_name,
    check_query,
    encryptor,
    existing,
    note_write,
    schema_checker,
    session,
    translated,
)

if TYPE_CHECKING:
    from dbcli.encryption.fields import Encryptor

DEFAULT_BATCH = 1000
SHOWN_LINES = 20


@dataclass
class ImportReport:
    collection: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # first few reasons, "line N: ..."

    def as_row(self) -> dict[str, Any]:
        return {"collection": self.collection, "read": self.read, "inserted": self.inserted,
                "updated": self.updated, "unchanged": self.unchanged, "duplicates": self.duplicates,
                "rejected": self.rejected, "rejected_lines": self.rejected_lines[:SHOWN_LINES]}

    def _reject(self, line: int, why: str) -> None:
        self.rejected += 1
        if len(self.rejected_lines) < SHOWN_LINES:
            self.rejected_lines.append(line)
        if len(self.problems) < 5:
            self.problems.append(f"line {line}: {why}")


def _dotted(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def import_documents(cfg: Config, name: str, source: str, *, fmt: str | None = None,
                     batch_size: int = DEFAULT_BATCH, upsert_key: str | None = None, skip_invalid: bool = False,
                     on_progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import ``source`` (a path or ``-``) into collection ``name``; see the module docstring."""
    import tempfile

    from dbcli import readers

    check_name(name)
    if batch_size < 1:
        raise InvalidInputError("--batch-size must be at least 1")
    enc = encryptor(cfg)
    encrypted = enc.fields_for(name) if enc is not None else set()
    if upsert_key is not None:
        if not upsert_key or upsert_key.startswith("$"):
            raise InvalidInputError(f"--upsert-key: invalid field name {upsert_key!r}")
        if any(upsert_key == f or upsert_key.startswith(f + ".") for f in encrypted):
            raise InvalidInputError(f"--upsert-key {upsert_key!r} is an encrypted field: "
                                    "ciphertexts never compare equal")
    report = ImportReport(collection=name)
    with ExitStack() as stack:
        chunks = _parallel_plan(source, fmt)
        if chunks is None:
            spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY,
                                                                      prefix="dbcli-import-"))
            stream = readers.open_input(source)
            try:
                invalid = _first_pass(readers.iter_records(stream, readers.guess_format(source, stream, fmt),
                                                           extended=True, json_only=True),
                                      spool, report, schema_checker(cfg, name), enc if encrypted else None, name,
                                      upsert_key)
            finally:
                if source != "-":
                    stream.close()
            spool.seek(0)
            spools: list[IO[bytes]] = [spool]
        else:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dbcli-import-"))
            paths, invalid = _parallel_first_pass(cfg, name, source, chunks, upsert_key, report, tmpdir)
            spools = [stack.enter_context(open(p, "rb")) for p in paths]
        if invalid and not skip_invalid:
            more = f" (and {invalid - 1} more)" if invalid > 1 else ""
            raise InvalidInputError(f"{invalid} document(s) violate the {name} schema, nothing was imported: "
                                    f"{report.problems[0]}{more}",
                                    hint="--skip-invalid imports the valid ones and reports the others")
        if report.read > invalid:
            decode = upsert_key is not None
            records = (item for sp in spools for item in _read_spool(sp, decode=decode))
            _write_all(cfg, name, records, report, batch_size, upsert_key, on_progress)
    if report.inserted or report.updated:
        note_write(cfg, name)
    return report


# ---- pass 1 in parallel: a large JSONL file is split at line boundaries, one process per part ---
# (FerretDB/MongoDB is idle during pass 1, so its cores are free; parsing is the biggest cost)

PARALLEL_MIN_BYTES = 8 << 20
MAX_WORKERS = 4


def _parallel_plan(source: str, fmt: str | None) -> list[tuple[int, int, int]] | None:
    """(start byte, end byte, lines before) per part of a big plain JSONL file; None otherwise."""
    import os
    from pathlib import Path

    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if source == "-" or workers < 2:
        return None
    path = Path(source)
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        return None
    if size < PARALLEL_MIN_BYTES:
        return None
    kind = (fmt or "").lower()
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
        if not (kind in ("jsonl", "ndjson") or (not kind and suffix in (".jsonl", ".ndjson"))
                or (not kind and suffix not in (".json", ".csv") and head[:1] == b"{")):
            return None
        cuts = [0]
        for i in range(1, workers):
            fh.seek(size * i // workers)
            fh.readline()  # to the start of the next line
            if fh.tell() > cuts[-1] and fh.tell() < size:
                cuts.append(fh.tell())
        cuts.append(size)
        # line numbers: newlines before each cut, counted in one sequential read
        fh.seek(0)
        before, lines, pos = [0], 0, 0
        for cut in cuts[1:-1]:
            while pos < cut:
                block = fh.read(min(1 << 20, cut - pos))
                lines += block.count(b"\n")
                pos += len(block)
            before.append(lines)
    parts = [(cuts[i], cuts[i + 1], before[i]) for i in range(len(cuts) - 1)]
    return parts if len(parts) > 1 else None


class _LineRange:
    """The lines of one part of a file, decoded, for ``readers.iter_records``.

    It first yields one empty line per line before the part: readers skips blank lines but counts
    them, so every line number it reports (errors included) is the line number in the whole file.
    """

    def __init__(self, path: str, start: int, end: int, lines_before: int) -> None:
        self.path, self.start, self.end, self.lines_before = path, start, end, lines_before

    def __iter__(self) -> Iterator[str]:
        yield from ("\n" for _ in range(self.lines_before))
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            pos = self.start
            for raw in fh:
                if pos >= self.end:
                    return
                pos += len(raw)
                yield raw.decode("utf-8")


@dataclass
class _PartResult:
    read: int = 0
    invalid: int = 0
    rejected_lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: tuple[str, str, str | None] | None = None  # class name, message, hint (exceptions lose hints)


def _part_pass(cfg: Config, name: str, path: str, start: int, end: int, lines_before: int,
               upsert_key: str | None, spool_path: str) -> _PartResult:
    """Pass 1 over one part of the file into its own spool; runs in a worker process."""
    from typing import cast

    from dbcli import readers
    from dbcli.errors import DbcliError

    result = _PartResult()
    report = ImportReport(collection=name)
    try:
        enc = encryptor(cfg)
        records = readers.iter_records(cast(IO[str], _LineRange(path, start, end, lines_before)), "jsonl",
                                       extended=True)
        with open(spool_path, "wb") as spool:
            result.invalid = _first_pass(records, spool, report, schema_checker(cfg, name),
                                         enc if enc is not None and enc.fields_for(name) else None, name, upsert_key)
    except DbcliError as e:
        result.error = (type(e).__name__, e.message, e.hint)
    result.read, result.rejected_lines, result.problems = report.read, report.rejected_lines, report.problems
    return result


def _parallel_first_pass(cfg: Config, name: str, path: str, parts: list[tuple[int, int, int]],
                         upsert_key: str | None, report: ImportReport, tmpdir: str) -> tuple[list[str], int]:
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from dbcli import errors

    spools = [os.path.join(tmpdir, f"part{i}.bson") for i in range(len(parts))]
    # spawn, not fork: the parent may hold driver threads and locks a forked child would inherit
    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_part_pass, cfg, name, path, *parts[i], upsert_key, spools[i])
                   for i in range(1, len(parts))]
        results = [_part_pass(cfg, name, path, *parts[0], upsert_key, spools[0])]
        results += [f.result() for f in futures]
    invalid = 0
    for part in results:  # in file order, so the first error reported is the first in the file
        if part.error is not None:
            cls_name, message, hint = part.error
            raise getattr(errors, cls_name, errors.DbcliError)(message, hint=hint)
        report.read += part.read
        report.rejected += part.invalid
        invalid += part.invalid
        report.rejected_lines = (report.rejected_lines + part.rejected_lines)[:SHOWN_LINES]
        report.problems = (report.problems + part.problems)[:5]
    return spools, invalid


_HEAD = struct.Struct("<II")  # line number, BSON length
# the spool stays in memory up to this size (small imports never touch the disk), then moves to an
# unnamed temporary file: memory stays bounded whatever the input size
SPOOL_IN_MEMORY = 64 << 20


def _first_pass(records: Iterator[tuple[int, dict[str, Any]]], spool: IO[bytes], report: ImportReport,
                problem: Callable[[dict[str, Any]], str | None] | None, enc: Encryptor | None, name: str,
                upsert_key: str | None) -> int:
    """Validate, encrypt and BSON-encode every record into ``spool``; returns how many were invalid."""
    import bson
    from bson.errors import InvalidDocument

    invalid = 0
    write, pack, encode, new_id = spool.write, _HEAD.pack, bson.encode, bson.ObjectId
    for lineno, doc in records:
        report.read += 1
        why = problem(doc) if problem is not None else None
        if why is None and upsert_key is not None and _dotted(doc, upsert_key) is _ABSENT:
            why = f"no value for the upsert key {upsert_key!r}"
        if why is None:
            if enc is not None:
                doc = enc.encrypt_doc(name, doc)  # without the key: ConfigError naming the field, nothing written
            if upsert_key is None and "_id" not in doc:
                doc = {"_id": new_id(), **doc}  # ids made here, so raw BSON can go out as it is
            try:
                data = encode(doc)
            except (InvalidDocument, OverflowError, TypeError, ValueError) as e:
                why = f"cannot be encoded as BSON ({str(e).splitlines()[0][:120]})"
            else:
                write(pack(lineno, len(data)))
                write(data)
                continue
        invalid += 1
        report._reject(lineno, why)
    return invalid


def _read_spool(spool: IO[bytes], *, decode: bool) -> Iterator[tuple[int, Any]]:
    """(line, document) from the spool: RawBSONDocument for inserts, dicts for upserts."""
    import bson
    from bson.raw_bson import RawBSONDocument

    read, size = spool.read, _HEAD.size
    while True:
        head = read(size)
        if len(head) < size:
            return
        lineno, length = _HEAD.unpack(head)
        data = read(length)
        yield lineno, (bson.decode(data) if decode else RawBSONDocument(data))


# batches on the wire at once. One: while it is stored, the next is read from the spool. Two or three
# writers were measured 1.5-2x slower on FerretDB/SQLite (its writers contend for the database lock).
WRITERS = 1


def _write_all(cfg: Config, name: str, records: Iterator[tuple[int, Any]], report: ImportReport, batch_size: int,
               upsert_key: str | None, on_progress: Callable[[int], None] | None) -> None:
    import bson

    depth = 1 if upsert_key is not None else WRITERS
    with session(cfg) as db, ThreadPoolExecutor(max_workers=depth, thread_name_prefix="dbcli-import") as pool:
        coll = db[name]
        pending: deque[Future[_Batch]] = deque()
        written = 0

        def collect() -> None:
            nonlocal written
            batch = pending.popleft().result()  # a batch's error surfaces here
            batch.merge_into(report)
            written += batch.size
            if on_progress is not None:
                on_progress(written)

        def submit(docs: list[Any], lines: list[int]) -> None:
            if len(pending) >= depth:
                collect()  # bounded: at most ``depth`` batches in memory and on the wire
            pending.append(pool.submit(_write_batch, coll, docs, lines, upsert_key))

        docs: list[Any] = []
        lines: list[int] = []
        keys: set[bytes] = set()
        for lineno, doc in records:
            if upsert_key is not None:
                # an unordered bulk may apply its operations in any order: a key seen twice starts a new
                # batch, and the single writer thread runs batches in order, so the later line wins
                key = bson.encode({"k": _dotted(doc, upsert_key)})
                if key in keys:
                    submit(docs, lines)
                    docs, lines, keys = [], [], set()
                keys.add(key)
            docs.append(doc)
            lines.append(lineno)
            if len(docs) >= batch_size:
                submit(docs, lines)
                docs, lines, keys = [], [], set()
        if docs:
            submit(docs, lines)
        while pending:
            collect()


@dataclass
class _Batch:
    size: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def merge_into(self, report: ImportReport) -> None:
        report.inserted += self.inserted
        report.updated += self.updated
        report.unchanged += self.unchanged
        report.duplicates += self.duplicates
        for line, why in self.rejections:
            report._reject(line, why)

    def count_upserts(self, res: dict[str, Any]) -> None:
        self.inserted += int(res.get("nUpserted", 0))
        self.updated += int(res.get("nModified", 0))
        self.unchanged += int(res.get("nMatched", 0)) - int(res.get("nModified", 0))


def _write_batch(coll: Any, docs: list[Any], lines: list[int], upsert_key: str | None) -> _Batch:
    """One unordered bulk write and what came of it."""
    from pymongo.errors import BulkWriteError

    batch = _Batch(size=len(docs))
    try:
        with translated(docs):
            try:
                if upsert_key is None:
                    coll.insert_many(docs, ordered=False)
                    batch.inserted = len(docs)
                else:
                    batch.count_upserts(coll.bulk_write(_upserts(docs, upsert_key), ordered=False).bulk_api_result)
            except BulkWriteError as e:
                details = e.details
                if upsert_key is None:
                    batch.inserted = int(details.get("nInserted", 0))
                else:
                    batch.count_upserts(details)
                for err in details.get("writeErrors") or []:
                    if err.get("code") == 11000:
                        batch.duplicates += 1
                    else:
                        from dbcli.config.load import redact_text

                        batch.rejections.append((lines[int(err.get("index", 0))],
                                                 redact_text(str(err.get("errmsg", "rejected")))[:200]))
    except InvalidInputError as e:
        raise InvalidInputError(f"batch starting at line {lines[0]}: {e.message}") from e
    return batch


def _upserts(docs: list[dict[str, Any]], key: str) -> list[Any]:
    from pymongo import UpdateOne

    ops = []
    for doc in docs:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        update: dict[str, Any] = {"$set": fields} if fields else {}
        if "_id" in doc and key != "_id":
            update["$setOnInsert"] = {"_id": doc["_id"]}
        if not update:
            update = {"$setOnInsert": {"_id": doc["_id"]}}
        ops.append(UpdateOne({key: _dotted(doc, key)}, update, upsert=True))
    return ops


# ---- export ------------------------------------------------------------------------------------

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
    from bson import json_util

    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    if canonical and fmt == "csv":
        raise UsageError("--canonical applies to json and jsonl exports")
    opts = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    enc = encryptor(cfg)
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
                    return json_util.dumps(d, json_options=opts, ensure_ascii=False)
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
    import csv

    from dbcli.output import cell_text

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
            value = _dotted(doc, col)
            if value is not _ABSENT:
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
