"""Bulk import of documents into a collection, in two passes.

Import reads JSON arrays, JSONL or CSV (Extended JSON values) through ``dbcli.readers``. Pass 1
(``spool``) parses every document, validates it against the collection's JSON Schema, encrypts
its configured fields and BSON-encodes it into a spool; any malformed or invalid document stops
there with exit 5 and nothing written, unless ``skip_invalid``. Pass 2 (here) streams the spool to
the server in batches, ``insert_many(ordered=False)`` of raw BSON (nothing parsed or encoded
twice) or, with a key field, each document inserted or updated by its key (``dbcli.mongo.keyed``: one
indexed read per batch, then inserts and updates by ``_id``), one batch on the wire while the next is read.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

import bson
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from dbcli import readers
from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.encryption.fields import Encryptor
from dbcli.errors import InvalidInputError, UsageError
from dbcli.mongo.bulk import is_ferretdb1, statement_limit
from dbcli.mongo.collections import note_write
from dbcli.mongo.connection import max_document_size, session, translated
from dbcli.mongo.json_schema import schema_checker
from dbcli.mongo.keyed import write_keyed
from dbcli.mongo.query import check_name, dotted
from dbcli.mongo.spool import SPOOL_IN_MEMORY, ImportReport, first_pass, parallel_first_pass, parallel_plan, read_spool

DEFAULT_BATCH = 1000
# batches on the wire at once. One: while it is stored, the next is read from the spool. Two or three
# writers were measured 1.5-2x slower on FerretDB/SQLite (its writers contend for the database lock).
WRITERS = 1


def import_documents(cfg: Config, name: str, source: str, *, fmt: str | None = None,
                     batch_size: int = DEFAULT_BATCH, upsert_key: str | None = None, skip_invalid: bool = False,
                     on_progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import ``source`` (a path or ``-``) into collection ``name``; see the module docstring."""
    check_name(name)
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    enc = Encryptor.from_config(cfg)
    encrypted = enc.fields_for(name) if enc is not None else set()
    if upsert_key is not None:
        if not upsert_key or upsert_key.startswith("$"):
            raise UsageError(f"--upsert-key: invalid field name {upsert_key!r}")
        if any(upsert_key == f or upsert_key.startswith(f + ".") for f in encrypted):
            raise InvalidInputError(f"--upsert-key {upsert_key!r} is an encrypted field: "
                                    "ciphertexts never compare equal")
    report = ImportReport(collection=name)
    with session(cfg) as db:  # before pass 1, which refuses documents over the server's size limit
        max_size = max_document_size(db)
    with ExitStack() as stack:
        chunks = parallel_plan(source, fmt)
        if chunks is None:
            spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY,
                                                                      prefix="dbcli-import-"))
            stream = readers.open_input(source)
            try:
                invalid = first_pass(readers.iter_records(stream, readers.guess_format(source, stream, fmt),
                                                          extended=True, json_only=True),
                                     spool, report, schema_checker(cfg, name), enc if encrypted else None, name,
                                     upsert_key, max_size)
            finally:
                if source != "-":
                    stream.close()
            spool.seek(0)
            spools: list[IO[bytes]] = [spool]
        else:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dbcli-import-"))
            paths, invalid = parallel_first_pass(cfg, name, source, chunks, upsert_key, report, tmpdir,
                                                  max_size)
            spools = [stack.enter_context(open(p, "rb")) for p in paths]
        if invalid and not skip_invalid:
            more = f" (and {invalid - 1} more)" if invalid > 1 else ""
            what = f"violate the {name} schema" if report.schema_invalid == invalid else "cannot be imported"
            raise InvalidInputError(f"{invalid} document(s) {what}, nothing was imported: "
                                    f"{report.problems[0]}{more}",
                                    hint="--skip-invalid imports the valid ones and reports the others")
        if report.read > invalid:
            decode = upsert_key is not None
            records = (item for sp in spools for item in read_spool(sp, decode=decode))
            _write_all(cfg, name, records, report, batch_size, upsert_key, on_progress)
    if report.inserted or report.updated:
        note_write(cfg, name)
    return report


# ---- pass 2 ------------------------------------------------------------------------------------

def _write_all(cfg: Config, name: str, records: Iterator[tuple[int, Any]], report: ImportReport, batch_size: int,
               upsert_key: str | None, on_progress: Callable[[int], None] | None) -> None:
    depth = 1 if upsert_key is not None else WRITERS
    with session(cfg) as db, ThreadPoolExecutor(max_workers=depth, thread_name_prefix="dbcli-import") as pool:
        coll = db[name]
        limit = statement_limit(db.client) if upsert_key is not None else 0
        parallel = upsert_key is not None and not is_ferretdb1(db.client)
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
            pending.append(pool.submit(_write_batch, coll, docs, lines, upsert_key, limit, parallel))

        docs: list[Any] = []
        lines: list[int] = []
        keys: set[bytes] = set()
        for lineno, doc in records:
            if upsert_key is not None:
                # an unordered bulk may apply its operations in any order: a key seen twice starts a new
                # batch, and the single writer thread runs batches in order, so the later line wins
                key = bson.encode({"k": dotted(doc, upsert_key)})
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
            report.reject(line, why)

    def count_upserts(self, res: Mapping[str, Any]) -> None:
        self.inserted += int(res.get("nUpserted", 0))
        self.updated += int(res.get("nModified", 0))
        self.unchanged += int(res.get("nMatched", 0)) - int(res.get("nModified", 0))


def _write_batch(coll: Collection[Any], docs: list[Any], lines: list[int], upsert_key: str | None,
                 limit: int = 0, parallel: bool = False) -> _Batch:
    """One unordered bulk write (keyed: ``dbcli.mongo.keyed``, at most ``limit`` statements a command) and
    what came of it."""
    batch = _Batch(size=len(docs))
    try:
        with translated(docs):
            try:
                if upsert_key is None:
                    coll.insert_many(docs, ordered=False)
                    batch.inserted = len(docs)
                else:
                    batch.count_upserts(write_keyed(coll, docs, upsert_key, limit, parallel=parallel))
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
                        batch.rejections.append((lines[int(err.get("index", 0))],
                                                 redact_text(str(err.get("errmsg", "rejected")))[:200]))
    except InvalidInputError as e:
        raise InvalidInputError(f"batch starting at line {lines[0]}: {e.message}") from e
    return batch

