"""Import pass 1: every input document parsed, validated, encrypted and BSON-encoded into a spool.

Nothing is written to the server in this pass, so a malformed or invalid document can stop the
whole import with nothing written. The spool holds (line number, BSON) records: in memory up to
``SPOOL_IN_MEMORY``, then in an unnamed temporary file, so memory stays bounded and stdin works.

A big plain JSONL file is split at line boundaries and its parts are validated in parallel, one
process per part: parsing is the biggest cost, and the server is idle during this pass.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import bson
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument

from dbcli import errors, readers
from dbcli.config.model import Config
from dbcli.encryption.fields import Encryptor
from dbcli.mongo.connection import DEFAULT_MAX_DOCUMENT, too_large
from dbcli.mongo.json_schema import Problem, schema_checker
from dbcli.mongo.query import ABSENT, dotted

SHOWN_LINES = 20
_HEAD = struct.Struct("<II")  # line number, BSON length
# the spool stays in memory up to this size (small imports never touch the disk), then moves to an
# unnamed temporary file: memory stays bounded whatever the input size
SPOOL_IN_MEMORY = 64 << 20
PARALLEL_MIN_BYTES = 8 << 20
MAX_WORKERS = 4


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
    schema_invalid: int = 0  # of the rejected in pass 1, those the JSON Schema refused

    def as_row(self) -> dict[str, Any]:
        return {"collection": self.collection, "read": self.read, "inserted": self.inserted,
                "updated": self.updated, "unchanged": self.unchanged, "duplicates": self.duplicates,
                "rejected": self.rejected, "rejected_lines": self.rejected_lines[:SHOWN_LINES]}

    def reject(self, line: int, why: str) -> None:
        self.rejected += 1
        if len(self.rejected_lines) < SHOWN_LINES:
            self.rejected_lines.append(line)
        if len(self.problems) < 5:
            self.problems.append(f"line {line}: {why}")


def first_pass(records: Iterator[tuple[int, dict[str, Any]]], spool: IO[bytes], report: ImportReport,
               problem: Problem | None, enc: Encryptor | None, name: str, upsert_key: str | None,
               max_size: int = DEFAULT_MAX_DOCUMENT) -> int:
    """Validate, encrypt and BSON-encode every record into ``spool``; returns how many were invalid.

    ``max_size``: the server's maxBsonObjectSize; a bigger document is invalid.
    """
    invalid = 0
    write, pack, encode, new_id = spool.write, _HEAD.pack, bson.encode, bson.ObjectId
    for lineno, doc in records:
        report.read += 1
        why = problem(doc) if problem is not None else None
        if why is not None:
            report.schema_invalid += 1
        if why is None and upsert_key is not None and dotted(doc, upsert_key) is ABSENT:
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
                if len(data) > max_size:
                    invalid += 1
                    report.reject(lineno, too_large(len(data), max_size))
                    continue
                write(pack(lineno, len(data)))
                write(data)
                continue
        invalid += 1
        report.reject(lineno, why)
    return invalid


def read_spool(spool: IO[bytes], *, decode: bool) -> Iterator[tuple[int, Any]]:
    """(line, document) from the spool: RawBSONDocument for inserts, dicts for upserts."""
    read, size = spool.read, _HEAD.size
    while True:
        head = read(size)
        if len(head) < size:
            return
        lineno, length = _HEAD.unpack(head)
        data = read(length)
        yield lineno, (bson.decode(data) if decode else RawBSONDocument(data))


# ---- in parallel: a large JSONL file is split at line boundaries, one process per part ----------

def parallel_plan(source: str, fmt: str | None) -> list[tuple[int, int, int]] | None:
    """(start byte, end byte, lines before) per part of a big plain JSONL file; None otherwise."""
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
    schema_invalid: int = 0
    error: tuple[str, str, str | None] | None = None  # class name, message, hint (exceptions lose hints)


def _part_pass(cfg: Config, name: str, path: str, start: int, end: int, lines_before: int,
               upsert_key: str | None, spool_path: str, max_size: int) -> _PartResult:
    """Pass 1 over one part of the file into its own spool; runs in a worker process."""
    result = _PartResult()
    report = ImportReport(collection=name)
    try:
        enc = Encryptor.from_config(cfg)
        records = readers.iter_records(cast(IO[str], _LineRange(path, start, end, lines_before)), "jsonl",
                                       extended=True)
        with open(spool_path, "wb") as spool:
            result.invalid = first_pass(records, spool, report, schema_checker(cfg, name),
                                        enc if enc is not None and enc.fields_for(name) else None, name, upsert_key,
                                        max_size)
    except errors.DbcliError as e:
        result.error = (type(e).__name__, e.message, e.hint)
    result.read, result.rejected_lines, result.problems = report.read, report.rejected_lines, report.problems
    result.schema_invalid = report.schema_invalid
    return result


def parallel_first_pass(cfg: Config, name: str, path: str, parts: list[tuple[int, int, int]],
                        upsert_key: str | None, report: ImportReport, tmpdir: str, max_size: int
                        ) -> tuple[list[str], int]:
    """Pass 1 over ``parts`` of ``path``, one spool file each in ``tmpdir``: (spool paths, invalid)."""
    spools = [os.path.join(tmpdir, f"part{i}.bson") for i in range(len(parts))]
    # spawn, not fork: the parent may hold driver threads and locks a forked child would inherit
    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_part_pass, cfg, name, path, *parts[i], upsert_key, spools[i], max_size)
                   for i in range(1, len(parts))]
        results = [_part_pass(cfg, name, path, *parts[0], upsert_key, spools[0], max_size)]
        results += [f.result() for f in futures]
    invalid = 0
    for part in results:  # in file order, so the first error reported is the first in the file
        if part.error is not None:
            cls_name, message, hint = part.error
            raise getattr(errors, cls_name, errors.DbcliError)(message, hint=hint)
        report.read += part.read
        report.rejected += part.invalid
        invalid += part.invalid
        report.schema_invalid += part.schema_invalid
        report.rejected_lines = (report.rejected_lines + part.rejected_lines)[:SHOWN_LINES]
        report.problems = (report.problems + part.problems)[:5]
    return spools, invalid
