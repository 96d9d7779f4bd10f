"""``activity ingest``: JSONL events, validated as a whole first, then written in exactly-once batches.

One event per line: ``user_id``, ``type``, ``timestamp`` (or ``at``), optional ``data`` (an object)
and optional ``event_id``; without one, the id is the SHA-256 of the event's canonical content, so
ingesting the same file again finds every event already there. The input is read twice (stdin is
spooled to a temporary file) so memory stays flat: pass 1 validates every line and collects the
user ids (one PostgreSQL query checks them all), pass 2 writes.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from dbcli.config.model import Config
from dbcli.errors import InvalidInputError, UsageError
from dbcli.readers import open_input
from dbcli.shop.activity.model import (
    DEFAULT_BATCH,
    EVENTS,
    LARGE_BATCH,
    check_event_id,
    check_type,
    check_user_id,
    derive_event_id,
    event_doc,
    parse_timestamp,
)
from dbcli.shop.activity.session import Session, note_write, open_session
from dbcli.shop.activity.users import user_refs
from dbcli.shop.activity.writer import Writer

FIELDS = {"user_id", "type", "timestamp", "at", "data", "event_id"}
SHOWN_LINES = 20  # bad line numbers named in the error message
DERIVED_SHAPE = "0" * 64

Progress = Callable[[int, int], None]  # (events done, events to do)


class InvalidLinesError(InvalidInputError):
    """Some lines are invalid and nothing was written; ``problems`` lists (line, reason)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__(invalid_message(problems))
        self.problems = problems


@dataclass
class IngestResult:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    batches: int = 0
    recovered_users: int = 0
    seconds: float = 0.0
    problems: list[tuple[int, str]] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        rate = round(self.inserted / self.seconds) if self.seconds > 0 else None
        return {"read": self.read, "inserted": self.inserted, "duplicates": self.duplicates,
                "invalid": self.invalid, "batches": self.batches, "recovered_users": self.recovered_users,
                "seconds": round(self.seconds, 3), "events_per_second": rate}


Parsed = tuple[int, str, Any, dict[str, Any] | None, str]  # user_id, type, timestamp, data, event_id


def parse_line(text: str, *, derive: bool = True) -> Parsed:
    """One JSONL line as (user_id, type, timestamp, data, event_id); InvalidInputError says why not.

    With ``derive`` false an absent event_id stays "" (validation does not need the hash).
    """
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise InvalidInputError(f"invalid JSON ({str(e).splitlines()[0][:80]})") from None
    if not isinstance(obj, dict):
        raise InvalidInputError("expected a JSON object")
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]!r} (put extra attributes under data)")
    if "timestamp" in obj and "at" in obj:
        raise InvalidInputError("give timestamp or at, not both")
    for name in ("user_id", "type"):
        if name not in obj:
            raise InvalidInputError(f"missing {name}")
    if "timestamp" not in obj and "at" not in obj:
        raise InvalidInputError("missing timestamp")
    uid = check_user_id(obj["user_id"])
    kind = check_type(obj["type"])
    ts = parse_timestamp(obj["timestamp"] if "timestamp" in obj else obj["at"])
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidInputError("data must be a JSON object")
    given = obj.get("event_id")
    if given is not None:
        return uid, kind, ts, data, check_event_id(given)
    return uid, kind, ts, data, derive_event_id(uid, kind, ts, data) if derive else ""


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    stream.seek(0)
    for lineno, line in enumerate(stream, start=1):
        if line.strip():
            yield lineno, line


def _open(source: str) -> IO[str]:
    """A seekable text stream: the file, or stdin spooled (memory up to 32 MB, then disk)."""
    if source != "-":
        return open_input(source)
    spool = tempfile.SpooledTemporaryFile(max_size=32 << 20, mode="w+", encoding="utf-8")  # noqa: SIM115
    for chunk in iter(lambda: sys.stdin.read(1 << 20), ""):
        spool.write(chunk)
    return spool


def ingest(cfg: Config, source: str, *, skip_invalid: bool = False, batch_size: int | None = None,
           progress: Progress | None = None) -> IngestResult:
    """Validate the whole input, then write it; with invalid lines and no ``skip_invalid``, write nothing.
    ``batch_size`` None: LARGE_BATCH, or DEFAULT_BATCH on FerretDB 1.x."""
    if batch_size is not None and not 1 <= batch_size <= 100_000:
        raise UsageError("--batch-size must be between 1 and 100000")
    started = time.perf_counter()
    result = IngestResult()
    with _open(source) as stream, open_session(cfg) as session:
        users = _validate(session, stream, result)
        refs = user_refs(cfg, users)
        unknown = users - set(refs)
        if unknown:  # one more pass, only now, to name the lines of the unknown users
            bad = {n for n, _ in result.problems}
            for lineno, line in _lines(stream):
                uid = parse_line(line, derive=False)[0] if lineno not in bad else None
                if uid in unknown:
                    result.problems.append((lineno, f"user {uid} not found in PostgreSQL users"))
            result.problems.sort()
        result.invalid = len(result.problems)
        if result.problems and not skip_invalid:
            raise InvalidLinesError(result.problems)
        if batch_size is None:
            batch_size = DEFAULT_BATCH if session.rewrite else LARGE_BATCH
        _write(session, stream, result, refs, batch_size, progress)
    result.seconds = time.perf_counter() - started
    if result.inserted:
        note_write(cfg)
    return result


def invalid_message(problems: list[tuple[int, str]]) -> str:
    numbers = ", ".join(str(n) for n, _ in problems[:SHOWN_LINES])
    more = f" and {len(problems) - SHOWN_LINES} more" if len(problems) > SHOWN_LINES else ""
    first = problems[0][1]
    return (f"{len(problems)} invalid line{'s' if len(problems) != 1 else ''}: {numbers}{more} "
            f"(line {problems[0][0]}: {first}); nothing was written")


def _validate(session: Session, stream: IO[str], result: IngestResult) -> set[int]:
    """Pass 1: every line parsed and its document checked against the schema; returns the user ids."""
    check = session.checkers.get(EVENTS)
    enc = session.encryptor
    users: set[int] = set()
    for lineno, line in _lines(stream):
        result.read += 1
        try:
            uid, kind, ts, data, eid = parse_line(line, derive=False)
        except InvalidInputError as e:
            result.problems.append((lineno, e.message))
            continue
        # a derived id is always 64 hex digits: check the document with one of that shape, and
        # as it will be stored (encrypted fields included), so pass 2 cannot fail half-way
        doc = event_doc(eid or DERIVED_SHAPE, uid, kind, ts, data)
        if enc is not None:
            doc = enc.encrypt_doc(EVENTS, doc)
        problem = check(doc) if check else None
        if problem:
            result.problems.append((lineno, f"violates the {EVENTS} schema: {problem}"))
            continue
        users.add(uid)
    return users


def _write(session: Session, stream: IO[str], result: IngestResult, refs: dict[int, dict[str, str]],
           batch_size: int, progress: Progress | None) -> None:
    """Pass 2: the valid lines, in batches; the next batch is prepared while one is being written."""
    bad = {n for n, _ in result.problems}
    total = result.read - result.invalid
    writer = Writer(session)
    result.recovered_users = writer.recovered_users
    enc = session.encryptor
    done = 0
    in_flight: tuple[Future[Any], int] | None = None

    def collect() -> None:
        # one batch at a time reaches the server, in input order: the writer's guarantees
        # (journal first, counters last) hold per batch exactly as without the overlap
        nonlocal in_flight, done
        if in_flight is None:
            return
        future, size = in_flight
        in_flight = None
        written = future.result()
        result.inserted += written.inserted
        result.duplicates += written.duplicates
        result.batches += 1
        done += size
        if progress is not None:
            progress(done, total)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbcli-activity") as pool:
        batch: list[dict[str, Any]] = []
        try:
            for lineno, line in _lines(stream):
                if lineno in bad:
                    continue
                uid, kind, ts, data, eid = parse_line(line)
                doc = event_doc(eid, uid, kind, ts, data, refs[uid])
                if enc is not None:
                    doc = enc.encrypt_doc(EVENTS, doc)  # checked in pass 1
                batch.append(doc)
                if len(batch) >= batch_size:
                    collect()
                    in_flight = (pool.submit(writer.write, batch), len(batch))
                    batch = []
            collect()
            if batch:
                in_flight = (pool.submit(writer.write, batch), len(batch))
            collect()
        finally:
            if in_flight is not None:  # an error or Ctrl-C here: let the batch on the wire finish
                in_flight[0].exception()
