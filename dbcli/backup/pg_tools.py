"""What a backup makes of the PostgreSQL client tools (found by :mod:`dbcli.postgres.tools`): a
pg_dump too old for the server, and the one-line error for a tool that failed.
"""

from __future__ import annotations

import re
from pathlib import Path

from dbcli.config.redact import redact_text
from dbcli.errors import ConfigError, DbcliError, UnreachableError


def check_version(pg_dump: Path, version: tuple[str, int], server_major: int) -> None:
    if version[1] < server_major:
        raise ConfigError(f"pg_dump {version[0]} ({pg_dump}) is older than the server "
                          f"(PostgreSQL {server_major}) and cannot dump it",
                          hint=f"set backup.pg_dump to a pg_dump {server_major} or later")


def tool_failure(tool: str, code: int, stderr: str) -> DbcliError:
    """The dbcli error for a tool that exited with ``code``: the error line of its stderr, redacted."""
    lines = [line for line in redact_text(stderr).splitlines() if line.strip()]
    # the error itself, not the HINT/CONTEXT/DETAIL lines or warnings around it
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL|PANIC|error):", line)]
    reason = (errors or lines or ["no message"])[-1]
    reason = re.sub(r"^(pg_dump|pg_restore): (error: )?", "", reason)
    if "connection to server" in stderr or "could not connect" in stderr:
        return UnreachableError(f"{tool} could not connect: {reason}")
    return DbcliError(f"{tool} failed (exit {code}): {reason}")


def restore_error(stderr: str) -> str:
    """pg_restore's last line of (redacted) stderr, without its ``pg_restore: error:`` prefix."""
    lines = [line for line in redact_text(stderr).splitlines() if line.strip()]
    return re.sub(r"^pg_restore: (error: )?", "", lines[-1]) if lines else "no message"
