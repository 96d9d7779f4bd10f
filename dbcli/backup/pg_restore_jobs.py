"""Parallel PostgreSQL restores: ``pg_restore -j N`` straight into the database, counted after.

What this gives up, and why: pg_restore runs its jobs in separate sessions, so it cannot run in one
transaction (``--single-transaction`` and ``-j`` exclude each other). The checks that the
one-transaction restore makes inside its transaction run here before and after instead: the
target is checked empty (unless ``drop``) and the server not newer than pg_restore before
anything is written, and the archive's checksums are checked by the caller meanwhile
(``before_writing``); the rows are counted while pg_restore runs, each table once it is loaded
(pg_restore_counts). A restore that fails or counts wrong leaves what it wrote: restore into a
new, empty database, and drop it on failure.

pg_restore reads the archive itself (a local, unencrypted file or directory: -j needs to seek; the
caller fetches one that is encrypted or in object storage into a scratch directory first).

A server older than a setting pg_restore sends (pg_restore 17+ starts every session, the leader's and
each job's, with ``SET transaction_timeout = 0``, which PostgreSQL 15 and 16 reject): the sessions
talk to the server themselves, so the line cannot be filtered as the one-transaction restore filters
its script. pg_restore then runs without ``--exit-on-error``, which turns the refused ``SET`` into
an error it reports and goes past (the setting does not exist there: nothing is lost); any other
error kills it within half a second (it reads on meanwhile, where ``--exit-on-error`` stops at once),
and the restore fails as it would have. An older pg_restore (Debian's PostgreSQL 15 one, say) is no
way out: it cannot read archives of a newer pg_dump ("unsupported version (1.16) in file header").
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dbcli.backup import pg_compat
from dbcli.backup.liveness import Watchdog, io_bytes
from dbcli.backup.pg_restore import PSQL_OPTIONS, DamagedArchive, Restored, refuse_target
from dbcli.backup.pg_restore_counts import RowCounter
from dbcli.backup.pg_restore_sql import opening_sql
from dbcli.backup.pg_tools import restore_error, tool_failure
from dbcli.backup.repo import Blob
from dbcli.backup.stages import Progress
from dbcli.child_process import die_with_parent, wait_exited
from dbcli.config.model import Config
from dbcli.errors import DbcliError, UsageError
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import Tools, find_tools, libpq_connection, tool_version


def restore(cfg: Config, source: Blob, *, jobs: int, drop: bool, tables: list[dict[str, Any]], server_num: int,
            dbname: str | None = None, no_owner: bool = False, own_rows: bool = False,
            use_list: Path | None = None, progress: Progress,
            before_writing: Callable[[], None] = lambda: None) -> Restored:
    """pg_restore -j ``jobs`` the local archive ``source`` into the profile's database (or ``dbname``),
    a server of ``server_num`` (its server_version_num). ``before_writing()`` raises to stop the
    restore after the target's checks, before pg_restore starts (restore checks the checksums there)."""
    if source.local is None:  # restore fetches such an archive into a scratch directory first
        raise UsageError("restore --jobs needs the archive on a local disk")
    tools = find_tools(cfg)
    restore_version, restore_major = tool_version(tools.pg_restore)
    refused = frozenset(line for since, line in pg_compat.REFUSED if server_num < since <= restore_major * 10000)
    params = conn_params(cfg, dbname=dbname)
    # --verbose: its "finished item" messages start the row counts (pg_restore_counts)
    args = [str(tools.pg_restore), f"--jobs={jobs}", "--no-password", "--verbose",
            *([] if refused else ["--exit-on-error"])]
    if drop:
        args += ["--clean", "--if-exists"]
    if no_owner:
        args += ["--no-owner", "--no-privileges"]
    if use_list is not None:
        args.append(f"--use-list={use_list}")
    with (libpq_connection(params) as (env, conn_arg), Watchdog(params, cfg.postgres.liveness_check) as watch,
          tempfile.TemporaryFile() as err):
        code, lines, stderr = _psql(tools, env, conn_arg, watch,
                                    opening_sql(restore_major, check_empty=not drop) + b"COMMIT;\n")
        refuse_target(restore_version, stderr, params.get("dbname", "?"))
        if code != 0:
            raise tool_failure("psql", code, stderr)
        database = next((line[len("dbcli:target:"):] for line in lines if line.startswith("dbcli:target:")), "?")
        before_writing()
        progress(f"postgres: restoring {source.name} with {jobs} jobs")
        errors = _OtherErrors(err, refused)
        counter = RowCounter(cfg, dbname, tables, own_rows=own_rows, sessions=jobs)
        try:
            try:
                code = _run([*args, conn_arg, str(source.local)], env, watch, err, errors.check, counter.loaded)
                err.seek(0)
                text = without_progress(err.read().decode(errors="replace"))
            except _Stopped as stopped:
                code, text = 1, stopped.text
            if refused:
                text = errors.others(text)
                if code == 1 and not text.strip():
                    code = 0  # only the tolerated errors: pg_restore exits 1 for any it went past
            if code != 0:
                if "could not connect" in text or "connection to server" in text:
                    raise tool_failure("pg_restore", code, text)
                if "input file" in text or "could not read" in text or "could not open" in text:
                    raise DamagedArchive(source, f"pg_restore cannot read it: {restore_error(text)}")
                failed = tool_failure("pg_restore", code, text)
                raise DbcliError(f"{failed.message} (--jobs: the database keeps what was restored before it)",
                                 hint="restore --jobs into a new database; drop it and try again")
            progress("postgres: counting the restored rows")
            counts = counter.counts()
        except BaseException:
            counter.stop()
            raise
        watch.raise_if_fired()
    return Restored(database, counts, one_transaction=False)


def _run(args: list[str], env: dict[str, str], watch: Watchdog, err: IO[bytes], poll: Callable[[], None],
         loaded: Callable[[str], None]) -> int:
    """pg_restore -v, guarded by ``watch``; its stderr into ``err``, each table whose data it reports
    loaded to ``loaded``, ``poll()`` every half second. Anything raised kills it."""
    read_end, write_end = os.pipe()
    try:
        proc = watch.guard(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=write_end, env=env, preexec_fn=die_with_parent()))
    finally:
        os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end, err, loaded), daemon=True, name="dbcli-stderr")
    relay.start()
    watch.follow(lambda: io_bytes(proc.pid))
    try:
        while (code := wait_exited(proc, 0.5)) is None:
            poll()
        relay.join()  # its jobs have exited with it: the pipe is at its end
        watch.raise_if_fired()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return code


_LOADED = re.compile(rb"finished item \d+ TABLE DATA ([^\n]*)\n")
# what --verbose adds to pg_restore's stderr (a parallel restore's messages, those of --clean, and
# the item an error comes from). The jobs write a message in pieces ("pg_restore:", " ", a level
# such as "error: ", then the body, which ends its line), so another job's pieces may come before a
# body: it starts a line or follows a ":" or a space.
_PROGRESS = re.compile(
    rb"(?:(?m:^)|(?<=[: ]))"
    rb"(?:connecting to database for restore|connecting to new database \"[^\n]*"
    rb"|entering [a-z_ ]+|finished main parallel loop"
    rb"|(?:processing|launching|finished|skipping|processing missed) item \d+ [^\n]*"
    rb"|processing data for table [^\n]*|(?:processing|creating|dropping|executing) [A-Z][^\n]*"
    rb"|setting owner and privileges for [^\n]*|(?:disabling|enabling) triggers for [^\n]*"
    rb"|restoring large object with OID \d+|restored \d+ large objects?|implied [a-z-]+ restore"
    rb"|while [A-Z ]+:|from TOC entry \d+; [^\n]*)\n")


def _relay(read_end: int, err: IO[bytes], loaded: Callable[[str], None]) -> None:
    """Copy pg_restore's stderr into ``err`` without its progress messages; report each table whose
    data it has loaded (``finished item N TABLE DATA name``: a message is one write, so the jobs'
    messages interleave only between writes)."""
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while block := pipe.read(1 << 16):
            pending += block
            end = pending.rfind(b"\n") + 1
            for found in _LOADED.finditer(pending, 0, end):
                loaded(found.group(1).decode(errors="replace"))
            os.write(err.fileno(), _PROGRESS.sub(b"", pending[:end]))
            pending = pending[end:]
    os.write(err.fileno(), pending)


def without_progress(text: str) -> str:
    """pg_restore's stderr as the relay left it, without the pieces of prefix its progress messages left."""
    text = re.sub(r"(?:pg_restore: *)+", "pg_restore: ", text)
    return re.sub(r"(?m)^pg_restore: *(?:\n|\Z)", "", text)


class _Stopped(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _OtherErrors:
    """pg_restore's errors but those of the ``refused`` setting lines (see the module docstring).

    pg_restore's jobs are processes sharing one stderr, and each message goes out in pieces
    (``pg_restore:``, `` ``, ``error: ``, then the body), so the prefixes of two jobs can interleave; a
    body is one write. So the tolerated bodies are removed whole, then the prefixes, and whatever
    is left is another error: the first one is reported, the one --exit-on-error would have stopped at.
    """

    _PREFIXES = re.compile(r"pg_restore:|(?:error|warning|detail|hint): ")
    _IGNORED = re.compile(r"errors ignored on restore: \d+")

    def __init__(self, err: IO[bytes], refused: frozenset[bytes]) -> None:
        self.err, self.refused = err, refused
        self.tolerated = [f"could not execute query: ERROR:  unrecognized configuration parameter "
                          f"\"{line.split()[1].decode()}\"\nCommand was: {line.decode()}" for line in refused]

    def others(self, text: str) -> str:
        """The first error in ``text`` that is not tolerated (not the count of ignored ones), or ""."""
        for body in self.tolerated:
            text = text.replace(body + "\n", "").replace(body, "")
        bodies = (b.strip() for b in self._PREFIXES.split(text))
        first = next((b for b in bodies if b and not self._IGNORED.fullmatch(b)), "")
        return f"pg_restore: error: {first}" if first else ""

    def check(self) -> None:
        """Every half second: an error that is not tolerated stops pg_restore, as --exit-on-error would."""
        if not self.refused:
            return
        text = os.pread(self.err.fileno(), 1 << 20, 0).decode(errors="replace")
        other = self.others(without_progress(text[:text.rfind("\n") + 1]))  # whole messages only
        if other:
            raise _Stopped(other)


def _psql(tools: Tools, env: dict[str, str], conn_arg: str, watch: Watchdog,
          script: bytes) -> tuple[int, list[str], str]:
    proc = watch.guard(subprocess.Popen([str(tools.psql), *PSQL_OPTIONS, conn_arg], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**env, "PGCLIENTENCODING": "UTF8"}, preexec_fn=die_with_parent()))
    out, err = proc.communicate(script)
    watch.raise_if_fired()
    return proc.returncode, out.decode(errors="replace").splitlines(), err.decode(errors="replace")
