"""PostgreSQL restores: pg_restore's script applied by psql in one transaction, checked before it commits.

See ``restore`` for the order of things; pg_restore_sql holds the SQL sent around the script.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup import stages
from dbcli.backup.liveness import Watchdog, io_bytes
from dbcli.backup.pg_compat import PrologueFilter, refused_lines
from dbcli.backup.pg_restore_sql import closing_sql, opening_sql
from dbcli.backup.pg_tools import restore_error, tool_failure
from dbcli.backup.repo import Blob
from dbcli.backup.repo_local import LocalBlob
from dbcli.backup.stages import Progress
from dbcli.child_process import die_with_parent
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, ConflictError, DbcliError
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import find_tools, libpq_connection, tool_version


class DamagedArchive(CheckFailedError):
    """The archive failed its checksum or its decryption while being restored (nothing committed)."""

    def __init__(self, path: Path | Blob, detail: str) -> None:
        super().__init__(f"{path.name}: {detail}")
        self.detail = detail


@dataclass
class Restored:
    database: str
    counts: list[dict[str, Any]]  # {schema, table, expected, actual}: taken before the commit
    one_transaction: bool = True  # False after pg_restore -j (pg_restore_jobs): nothing is rolled back

    @property
    def committed(self) -> bool:
        """A count that differs rolls the whole restore back."""
        return all(c["expected"] == c["actual"] for c in self.counts)

    @property
    def rolled_back(self) -> bool:
        return self.one_transaction and not self.committed


def restore(cfg: Config, source: Path | Blob, *, key: bytes | None, drop: bool, tables: list[dict[str, Any]],
            server_num: int, sha256: str | None = None, large_objects: bool | None = None,
            dbname: str | None = None, no_owner: bool = False, own_rows: bool = False,
            use_list: Path | None = None, session_sql: bytes = b"", progress: Progress) -> Restored:
    """Restore the archive into the profile's database (or ``dbname``) in one transaction.

    ``pg_restore -f -`` turns the archive into SQL, which psql applies between two pieces of our
    own: first ``BEGIN`` and, inside the transaction, the emptiness check (unless ``drop``) and the
    tool version check; last, the row count of every table in ``tables`` (manifest entries), then
    ``COMMIT``. The counts run before the commit: a count that differs rolls everything back, and
    counting rows this transaction wrote costs less than counting them after. The archive's
    ``sha256`` is checked while pg_restore reads it. The closing SQL, and with it the COMMIT, is
    only sent once pg_restore has succeeded and the checksum matched; a psql whose input just ends
    (this process killed, say) never commits, and the server rolls back.

    pg_restore's script has no transaction statements of its own, except around large objects.
    Without them (``large_objects`` False, as the manifest records) pg_restore writes straight into
    psql. With them, or when unknown, pg_restore runs with ``--single-transaction`` (no
    BEGIN/COMMIT per large object) and its script passes through this process, which drops the
    script's final COMMIT. The script also passes through this process when the target server
    (``server_num``, its ``server_version_num``) refuses a line of the script's prologue, which is
    then dropped (see pg_compat).

    A server that stops answering (no bytes moved by psql for ``postgres.liveness_check`` seconds,
    and no new connection accepted) has pg_restore and psql killed, nothing committed: see liveness.
    """
    path = LocalBlob(source) if isinstance(source, Path) else source
    feed = key is not None or path.local is None  # pg_restore reads its stdin, not the file
    tools = find_tools(cfg)
    restore_version, restore_major = tool_version(tools.pg_restore)  # may differ from pg_dump's
    single = large_objects is not False
    prologue = PrologueFilter(refused_lines(server_num))
    relay = single or not prologue.done
    pg_args = ["--file=-", "--no-password", *(["--single-transaction"] if single else [])]
    if drop:
        pg_args += ["--clean", "--if-exists"]
    if no_owner:
        pg_args += ["--no-owner", "--no-privileges"]
    if use_list is not None:  # the archive's entries to restore, in order (backup.citus leaves some out)
        pg_args.append(f"--use-list={use_list}")
    psql_args = [str(tools.psql), *PSQL_OPTIONS]
    # session_sql: settings for the script's session (backup.citus turns Citus's DDL propagation off)
    head, tail = opening_sql(restore_major, check_empty=not drop) + session_sql, closing_sql(tables, own_rows)
    progress(f"postgres: restoring {path.name}")
    params = conn_params(cfg, dbname=dbname)
    with (libpq_connection(params) as (env, conn_arg),
          tempfile.TemporaryFile() as out,
          tempfile.TemporaryFile() as psql_err, tempfile.TemporaryFile() as restore_err,
          Watchdog(params, cfg.postgres.liveness_check) as watch):
        # our lines are read as UTF-8; pg_restore's script sets the dump's own encoding for its part
        psql = watch.guard(subprocess.Popen([*psql_args, conn_arg], stdin=subprocess.PIPE, stdout=out,
                                            stderr=psql_err, env={**env, "PGCLIENTENCODING": "UTF8"},
                                            preexec_fn=die_with_parent()))
        # the stream moves while psql reads the script or talks to the server, whichever way it comes
        watch.follow(lambda: io_bytes(psql.pid))
        assert psql.stdin is not None
        reader = _ArchiveReader(path, key, sha256)
        restore_code, problem, script_end = 0, None, b""
        try:
            sent = _send(psql.stdin, head)  # small: it fits in the pipe even before psql reads it
            if sent:
                # straight into psql: this process keeps its own end of psql's stdin open, so psql
                # sees no end of input before the closing SQL has followed
                dumper = watch.guard(subprocess.Popen(
                    [str(tools.pg_restore), *pg_args, *([] if feed else [str(path.local)])],
                    stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if relay else psql.stdin, stderr=restore_err, preexec_fn=die_with_parent()))
                try:
                    reader.start(dumper.stdin)
                    if relay:
                        assert dumper.stdout is not None
                        sent, script_end = _relay(dumper.stdout, psql.stdin, prologue)
                        dumper.stdout.close()  # were psql gone, pg_restore now stops instead of blocking
                    else:
                        stages.reached("pg_restore")
                    restore_code = dumper.wait()
                    watch.raise_if_fired()
                    restore_err.seek(0)
                    if restore_code == -signal.SIGPIPE or b"Broken pipe" in restore_err.read():
                        sent = False  # psql stopped reading: it failed, and its stderr says why
                    if not sent:
                        psql.wait()
                        psql_err.seek(0)
                        if re.search(rb"dbcli:(not-empty|server-newer)", psql_err.read()):
                            reader.stop()  # refused before reading anything: the hash cannot matter
                        # otherwise psql may have choked on a damaged archive: the hash says so
                finally:
                    if dumper.poll() is None or watch.fired:
                        reader.stop()  # a killed restore: its checksum cannot matter
                        dumper.kill()
                        dumper.wait()
                    reader.join()
                problem = reader.problem()
                if sent and restore_code == 0 and problem is None:
                    body = _without_final_commit(script_end) if single else script_end
                    if body is None:
                        psql.kill()
                        raise DbcliError("pg_restore's script did not end with its COMMIT: not restored")
                    sent = _send(psql.stdin, body + tail)
                elif sent:
                    psql.kill()  # no COMMIT was sent: the server rolls the transaction back
            with suppress(BrokenPipeError):
                psql.stdin.close()
            psql_code = psql.wait()
        except BaseException:
            reader.stop()
            reader.join()
            psql.kill()
            psql.wait()
            raise
        restore_err.seek(0)
        psql_err.seek(0)
        out.seek(0)
        restore_text = restore_err.read().decode(errors="replace")
        psql_text = psql_err.read().decode(errors="replace")
        lines = out.read().decode(errors="replace").splitlines()
    if problem is not None:
        raise problem  # a damaged archive, whatever else went wrong
    if restore_code < 0 and sent:
        raise DbcliError(f"pg_restore was killed by signal {-restore_code}: nothing was restored")
    if restore_code != 0 and sent:
        # writing SQL to a pipe, pg_restore only fails on its input: the archive is unreadable
        raise DamagedArchive(path, f"pg_restore cannot read it: {restore_error(restore_text)}")
    return outcome(restore_version, psql_code, psql_text, lines)


# psql reading SQL on its stdin, stopping at the first error; the dbcli: markers come out plain
PSQL_OPTIONS = ("--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--no-password", "--set=ON_ERROR_STOP=1",
                "--file=-")

# what pg_restore may print after its final COMMIT: blank lines, comments, psql's \unrestrict
_SCRIPT_TRAILER = re.compile(rb"(?:\n|--[^\n]*\n|\\unrestrict [^\n]*\n)*")
_HOLD = 1 << 16
_SEND_AT = 1 << 20


def _relay(source: IO[bytes], sink: IO[bytes], prologue: PrologueFilter) -> tuple[bool, bytes]:
    """Copy pg_restore's script into psql, all but its last bytes, which are returned (they hold the
    final COMMIT); False when psql stopped reading. ``prologue`` filters the script's first lines.
    The ``pg_restore`` stage follows the first block."""
    with suppress(AttributeError, OSError):  # bigger pipe, fewer wake-ups (Linux)
        fcntl.fcntl(source.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    buf = bytearray()
    fd = source.fileno()
    first = True
    try:
        # pg_restore writes a few KiB at a time: gather a MiB, send all but the last _HOLD bytes
        while block := os.read(fd, 1 << 20):
            buf += block
            if prologue.feed(buf) and len(buf) >= _SEND_AT:
                n = len(buf) - _HOLD
                sink.write(buf[:n])
                del buf[:n]
                sink.flush()
                if first:
                    stages.reached("pg_restore")
                    first = False
        prologue.feed(buf, final=True)
        sink.flush()
    except BrokenPipeError:
        return False, b""
    return True, bytes(buf)


def _without_final_commit(end: bytes) -> bytes | None:
    """The script's end without its final ``COMMIT;`` line (ours follows the counts), or None."""
    at = end.rfind(b"\nCOMMIT;\n")
    if at < 0 or not _SCRIPT_TRAILER.fullmatch(end, at + len(b"\nCOMMIT;\n")):
        return None
    return end[:at + 1] + end[at + len(b"\nCOMMIT;\n"):]


def outcome(restore_version: str, code: int, stderr: str, lines: list[str]) -> Restored:
    """What psql's output and stderr (the ``dbcli:`` markers of pg_restore_sql) say of the restore."""
    database = next((line[len("dbcli:target:"):] for line in lines if line.startswith("dbcli:target:")), "?")
    counts = next((json.loads(line[len("dbcli:counts:"):]) for line in lines if line.startswith("dbcli:counts:")),
                  None)
    refuse_target(restore_version, stderr, database)
    if counts is not None and "dbcli:count-mismatch" in stderr:
        return Restored(database, counts)  # rolled back; the caller reports the counts (exit 8)
    if code != 0 or counts is None:
        raise tool_failure("psql", code, re.sub(r"(?m)^psql:<stdin>:\d+: ", "", stderr))
    return Restored(database, counts)


def refuse_target(restore_version: str, stderr: str, database: str) -> None:
    """The refusals of pg_restore_sql.opening_sql: a target that is not empty, a server newer than pg_restore."""
    if "dbcli:not-empty" in stderr:
        raise ConflictError(f"postgres database {database} is not empty", hint="use --drop to replace its objects")
    found = re.search(r"dbcli:server-newer:(\d+)", stderr)
    if found:
        raise ConfigError(f"pg_restore {restore_version} is older than the server "
                          f"(PostgreSQL {int(found.group(1)) // 10000})")



def _send(sink: IO[bytes], data: bytes) -> bool:
    """Write to psql; False when psql is gone (it stopped on an error, reported from its stderr)."""
    try:
        sink.write(data)
        sink.flush()
        return True
    except BrokenPipeError:
        return False


class _ArchiveReader:
    """Checks the archive's SHA-256 while pg_restore reads it; when encrypted or in object storage,
    feeds it into pg_restore's stdin (decrypted on the way: AES-GCM also authenticates every chunk)."""

    def __init__(self, path: Blob, key: bytes | None, sha256: str | None) -> None:
        self.path, self.key, self.expected = path, key, sha256
        self.hash = hashlib.sha256()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self, sink: IO[bytes] | None) -> None:
        if sink is None and self.expected is None:
            return
        self.thread = threading.Thread(target=self._run, args=(sink,), daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def stop(self) -> None:
        """Stop reading (the verdict is then unknown: ``problem`` returns None)."""
        self.stopping.set()

    def problem(self) -> BaseException | None:
        if self.stopping.is_set():
            return None
        if self.error is not None:
            if isinstance(self.error, backup_crypto.DecryptError):
                return DamagedArchive(self.path, str(self.error))
            if isinstance(self.error, OSError):
                return DamagedArchive(self.path, f"cannot read it: {self.error.strerror or self.error}")
            return self.error
        if self.expected is not None and self.hash.hexdigest() != self.expected:
            return DamagedArchive(self.path, "checksum mismatch")
        return None

    def _run(self, sink: IO[bytes] | None) -> None:
        try:
            with self.path.open() as fh:
                if sink is None:  # pg_restore reads the file itself
                    while not self.stopping.is_set() and (block := fh.read(1 << 20)):
                        self.hash.update(block)
                    return
                feeding = True
                source = _Hashing(fh, self.hash)
                chunks = (backup_crypto.decrypt_chunks(source, self.key) if self.key
                          else iter(lambda: source.read(1 << 20), b""))
                for chunk in chunks:
                    if self.stopping.is_set():
                        return
                    if feeding:
                        try:
                            sink.write(chunk)
                        except BrokenPipeError:
                            feeding = False  # pg_restore failed; its own error is reported
        except BaseException as e:  # handed to the main thread
            self.error = e
        finally:
            if sink is not None:
                with suppress(BrokenPipeError):
                    sink.close()


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, fh: IO[bytes], digest: Any) -> None:
        self.fh, self.digest = fh, digest

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        return data
