"""PostgreSQL backups: pg_dump -Fc in an exported snapshot, its rows counted in that snapshot.

- Row counts are taken in the transaction that exported the snapshot pg_dump uses (``--snapshot``),
  so they are exactly the rows in the dump, and they run while pg_dump works (no extra wall time).
  That transaction is a psql session, not a psycopg connection (see psql_session).
- pg_dump writes straight into the backup file (its stdout is the file); only when encrypting, or
  uploading to object storage, does its output pass through this process (a multipart upload as it
  comes: no local copy), which still checks pg_dump's exit status and stderr.
- The finished archive is checked (pg_archive) and hashed before the manifest records it.
- ``backup create --jobs N``: pg_dump's directory format with N jobs instead (pg_dump_dir); when
  encrypted or in object storage, through a scratch directory (archive_transfer).
- A server that stops answering mid-dump ends it (exit 4) instead of leaving pg_dump and psql
  waiting forever: see liveness (progress is the dump file growing).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dbcli.backup import archive_transfer, pg_dump_dir, stages
from dbcli.backup import crypto as backup_crypto
from dbcli.backup.file_digest import FileDigest
from dbcli.backup.file_digest import drop as drop_digest
from dbcli.backup.liveness import Watchdog
from dbcli.backup.pg_archive import check_archive
from dbcli.backup.pg_tools import check_version, tool_failure
from dbcli.backup.psql_session import PsqlSession
from dbcli.backup.repo import Sink, Staging
from dbcli.backup.scratch import Scratch
from dbcli.backup.stages import Progress
from dbcli.backup.store import open_private
from dbcli.child_process import die_with_parent, wait_exited
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, WriteFailedError
from dbcli.fsutil import write_errors_mapped
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import find_tools, libpq_connection, tool_version

# a custom-format archive of even one empty table is far larger: smaller output is not a dump
MIN_DUMP_BYTES = 200


@dataclass
class Table:
    schema: str
    name: str
    kind: str  # pg_class.relkind: 'r' table, 'p' partitioned table (its rows live in partitions)
    rows: int
    oid: int  # pg_class.oid: the archive's TABLE DATA entry carries it whatever the name's encoding

    def as_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.name, "kind": self.kind, "rows": self.rows, "oid": self.oid}


@dataclass
class DumpResult:
    database: str
    server_version: str
    pg_dump_version: str
    file: str  # relative to the backup
    tables: list[Table]
    digests: dict[str, str]  # SHA-256 of stored files, taken on the way (a directory in place: none)
    large_objects: bool


# the tables pg_dump dumps data for: user tables, not extension members
_TABLES = """FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p')
     AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype = 'e')"""

# one line: the server, the snapshot pg_dump will dump, and the tables it holds. The counts run
# beside pg_dump, so they should take as little CPU from it as they can: a parallel count takes two
# more server processes (on 2 cores a 2M-row count costs 0.7 s of CPU in parallel, 0.3 s alone)
# for a result nobody waits on, and JIT-compiling a count(*) costs more than it saves. Set through
# pg_settings: a server older than 11 (jit) or 9.6 (parallel query) has not got them
_OPEN = """BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SELECT json_build_object(
  'tuned', (SELECT count(set_config(name, CASE name WHEN 'jit' THEN 'off' ELSE '0' END, false))
            FROM pg_settings WHERE name IN ('jit', 'max_parallel_workers_per_gather')),
  'num', current_setting('server_version_num')::int, 'version', current_setting('server_version'),
  'database', current_database(), 'snapshot', pg_export_snapshot(),
  'tables', (SELECT coalesce(jsonb_agg(jsonb_build_array(n.nspname, c.relname, c.relkind::text, c.oid,
    (SELECT i.inhparent FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
      WHERE i.inhrelid = c.oid AND pc.relkind = 'p')) ORDER BY n.nspname, c.relname), '[]') """ + _TABLES + "));"

# a line per plain table, in the same snapshot: the count statements are built by the server from
# the catalog (format's %I quotes the names) and run by psql's \gexec. ONLY: the rows the table's
# own TABLE DATA holds (COPY TO leaves out inheritance children); a partitioned table is not
# scanned again, its count is the sum of its partitions'
_COUNT = """SELECT format('SELECT json_build_array(%L, %L, count(*)) FROM ONLY %I.%I',
                    n.nspname, c.relname, n.nspname, c.relname) """ + _TABLES + """
   AND c.relkind = 'r' ORDER BY n.nspname, c.relname \\gexec"""


def dump(cfg: Config, staging: Staging, rel_dir: str, *, compression: int, key: bytes | None,
         progress: Progress, jobs: int = 1) -> DumpResult:
    """pg_dump -Fc the profile's database into ``<rel_dir>/<db>.dump`` of the backup being written and
    count its rows in the same snapshot; with ``jobs`` > 1, -Fd -j into ``<db>.dir`` (pg_dump_dir)."""
    with Scratch() as scratch:
        return _dump(cfg, staging, rel_dir, compression=compression, key=key, progress=progress, jobs=jobs,
                     scratch=scratch)


def _dump(cfg: Config, staging: Staging, rel_dir: str, *, compression: int, key: bytes | None,
          progress: Progress, jobs: int, scratch: Scratch) -> DumpResult:
    tools = find_tools(cfg)
    timeout = cfg.postgres.statement_timeout
    variables = {"dbcli_statement_timeout": f"{int(timeout * 1000)}ms"} if timeout else {}
    params = conn_params(cfg)
    # the watchdog outermost: its exit reports a stuck server in place of what the kills caused
    with (libpq_connection(params) as (env, conn_arg),
          Watchdog(params, cfg.postgres.liveness_check) as watch,
          PsqlSession(tools.psql, env, cfg, conn_arg, variables) as session):
        watch.guard(session.proc)
        # psql, not psycopg: pg_dump can start as soon as the snapshot exists (see psql_session)
        opened = session.send(("SET statement_timeout = :'dbcli_statement_timeout';\n" if timeout else "")
                              + _OPEN)
        version = tool_version(tools.pg_dump)  # while psql connects
        (server,) = session.rows(opened)
        check_version(tools.pg_dump, version, int(server["num"]) // 10000)
        database = str(server["database"])
        tables = [_Listed(str(s), str(n), str(k), int(oid), None if parent is None else int(parent))
                  for s, n, k, oid, parent in server["tables"]]
        if not tables:
            raise CheckFailedError(f"postgres database {database} has no tables: refusing to write an empty backup")
        safe = f"{rel_dir}/" + re.sub(r"[^A-Za-z0-9_.-]", "_", database)
        rel = safe + (pg_dump_dir.SUFFIX if jobs > 1 else ".dump" + (backup_crypto.SUFFIX if key else ""))
        args = [str(tools.pg_dump), "--format=custom", f"--compress={compression}",
                f"--snapshot={server['snapshot']}", "--no-password", conn_arg]
        progress(f"postgres: dumping {database} with pg_dump {version[0]}")

        def count() -> list[Table]:
            # counted while pg_dump works: the same rows, no extra wall time
            return _with_partition_totals(tables, {(s, n): int(rows) for s, n, rows in session.query(_COUNT)})

        label = f"postgres: dumping {database}"
        digest: str | FileDigest = ""
        in_place = staging.local_dir is not None and key is None
        local_archive: Path | None = None  # a directory archive, written by pg_dump itself
        if jobs > 1:
            # pg_dump -j writes plain local files: encrypted or uploaded after, from a scratch directory
            dest = local_archive = (staging.local_dir / rel if in_place and staging.local_dir
                                    else scratch.path() / Path(rel).name)
            args = pg_dump_dir.dump_args(tools.pg_dump, jobs=jobs, compression=compression,
                                         snapshot=str(server["snapshot"]), dest=dest, conn_arg=conn_arg)
            progress(f"postgres: dumping {database} with pg_dump {version[0]}, {jobs} jobs")
            with write_errors_mapped(dest) if not in_place else nullcontext():
                counted = pg_dump_dir.run(args, env, dest, watch, count, label, progress)
        elif staging.local_dir is None:
            counted = _stream(args, env, staging.create(rel), key, watch, count, label, progress)
            digest = staging.file_list({})[rel]["sha256"]  # taken as it was uploaded
        else:
            counted, digest = _to_file(args, env, staging.local_dir / rel, key, watch, count, label, progress)
    progress("postgres: checking the archive")
    try:
        large_objects = check_archive(tools, local_archive or staging.files.blob(rel),
                                      None if local_archive else key, tables=[t.as_dict() for t in counted])
    except BaseException:
        if isinstance(digest, FileDigest):
            drop_digest(digest)
        raise
    digests: dict[str, str] = {}
    if isinstance(digest, FileDigest):
        digests[rel] = digest.result()
    elif digest:
        digests[rel] = digest
    elif local_archive is not None and not in_place:
        progress(f"postgres: storing {Path(rel).name}" + (" encrypted" if key else ""))
        digests = archive_transfer.publish(local_archive, staging, rel, key, progress=progress)
    return DumpResult(database=database, server_version=str(server["version"]), pg_dump_version=version[0],
                      file=rel, tables=counted, digests=digests, large_objects=large_objects)


def _to_file(args: list[str], env: dict[str, str], dest: Path, key: bytes | None, watch: Watchdog,
             count: Callable[[], list[Table]], label: str,
             progress: Progress) -> tuple[list[Table], FileDigest]:
    """pg_dump into a local file: straight into it, or through the encrypting pump."""
    with open_private(dest) as out, tempfile.TemporaryFile() as err:
        digest = FileDigest(dest)  # before pg_dump: nothing to stop if the thread cannot start
        try:
            proc = watch.guard(subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE if key else out, stderr=err, env=env,
                                                preexec_fn=die_with_parent()))
            watch.follow(lambda: _size(dest))  # encrypted or not, the file grows as pg_dump works
        except BaseException:
            digest.cancel()
            raise
        pump: _Pump | None = None
        try:
            if key:
                pump = _Pump(proc.stdout, out, key)  # type: ignore[arg-type]
            counted = count()
            stages.reached("pg_dump")
            code = _wait(proc, lambda: _size(dest), label, progress)
            if pump:
                pump.join()
            watch.raise_if_fired()  # killed: not a file to hash
            if code == 0 and not (pump and pump.error):
                # the file is complete: hash it while it is synced and its table of contents checked
                digest.complete()
        except BaseException:
            digest.cancel()
            proc.kill()
            proc.wait()
            if pump:
                pump.join()
            raise
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        try:
            out.flush()
            os.fsync(out.fileno())
            if pump and pump.error:
                raise pump.error  # the cause (e.g. disk full); pg_dump then fails on a closed pipe
            if code != 0:
                raise _failure(code, stderr, dest)
        except BaseException:
            drop_digest(digest)
            raise
    try:
        size = dest.stat().st_size
        if size < MIN_DUMP_BYTES:
            raise CheckFailedError(f"pg_dump output is only {size} bytes: not a dump")
    except BaseException:
        drop_digest(digest)
        raise
    return counted, digest


def _stream(args: list[str], env: dict[str, str], sink: Sink, key: bytes | None, watch: Watchdog,
            count: Callable[[], list[Table]], label: str, progress: Progress) -> list[Table]:
    """pg_dump through this process into ``sink`` (an upload, which hashes what it sends)."""
    with tempfile.TemporaryFile() as err:
        proc = watch.guard(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=err, env=env, preexec_fn=die_with_parent()))
        pump = _Pump(proc.stdout, sink, key)  # type: ignore[arg-type]
        watch.follow(lambda: pump.moved)
        try:
            counted = count()
            stages.reached("pg_dump")
            code = _wait(proc, lambda: pump.moved, label, progress)
            pump.join()
            watch.raise_if_fired()
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            if pump.error:
                raise pump.error  # the upload's error (refused, endpoint down); pg_dump then fails on the pipe
            if code != 0:
                raise tool_failure("pg_dump", code, stderr)
            if pump.moved < MIN_DUMP_BYTES:
                raise CheckFailedError(f"pg_dump output is only {pump.moved} bytes: not a dump")
            sink.commit()
        except BaseException:
            proc.kill()
            proc.wait()
            pump.join()
            sink.abort()
            raise
    return counted


def _failure(code: int, stderr: str, dest: Path) -> Exception:
    """Why pg_dump failed: the file system refusing its output file is a write failure (exit 74)."""
    if code == -signal.SIGXFSZ:  # the kernel's answer to a write past ``ulimit -f``
        return WriteFailedError(f"pg_dump was killed by SIGXFSZ writing {dest}: the file size limit "
                                "(ulimit -f) was reached", hint="raise the limit for the backup job")
    for err in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        if f"could not write to output file: {os.strerror(err)}" in stderr:
            return OSError(err, os.strerror(err), str(dest))  # create maps it as any refused write
    return tool_failure("pg_dump", code, stderr)


@dataclass
class _Listed:
    schema: str
    name: str
    kind: str
    oid: int
    partition_of: int | None  # the partitioned table's oid, for a partition


def _with_partition_totals(tables: list[_Listed], own: dict[tuple[str, str], int]) -> list[Table]:
    """Each plain table's own rows; a partitioned table's: the sum of its partitions' (recursively)."""
    partitions: dict[int, list[_Listed]] = {}
    for t in tables:
        if t.partition_of is not None:
            partitions.setdefault(t.partition_of, []).append(t)

    def rows(t: _Listed) -> int:
        return own[(t.schema, t.name)] if t.kind == "r" else sum(map(rows, partitions.get(t.oid, [])))

    return [Table(t.schema, t.name, t.kind, rows(t), t.oid) for t in tables]


def _wait(proc: subprocess.Popen[bytes], written: Callable[[], int], label: str, progress: Progress) -> int:
    """Wait for pg_dump, reporting the bytes written so far (shown on a TTY only)."""
    while (code := wait_exited(proc, 0.5)) is None:
        progress(f"{label}: {written() / 2**20:.1f} MiB written")
    return code


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Pump(threading.Thread):
    """Copies pg_dump's stdout into ``sink``, through the encrypting writer when there is a ``key``
    (used when encrypting, and for uploads)."""

    def __init__(self, source: IO[bytes], sink: IO[bytes], key: bytes | None) -> None:
        super().__init__(daemon=True)
        self.source, self.sink, self.key = source, sink, key
        self.error: BaseException | None = None
        self.moved = 0  # bytes read from pg_dump
        self.start()

    def run(self) -> None:
        try:
            writer = backup_crypto.EncryptingWriter(self.sink, self.key) if self.key else self.sink
            while block := self.source.read(backup_crypto.CHUNK_SIZE):
                writer.write(block)
                self.moved += len(block)
            if self.key:
                writer.close()  # seals the final chunk
            else:
                writer.flush()
        except BaseException as e:  # handed to the main thread
            self.error = e
        finally:
            with suppress(OSError):
                self.source.close()  # on error, pg_dump then fails on the closed pipe instead of hanging
