"""One exception hierarchy; each class carries the exit code the CLI maps it to.

Messages are lowercase, one line, without a final period, and never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIG = 3
    UNREACHABLE = 4
    INVALID_INPUT = 5
    NOT_FOUND = 6
    CONFLICT = 7
    CHECK_FAILED = 8
    NOT_WRITABLE = 73  # sysexits' EX_CANTCREAT
    WRITE_FAILED = 74  # sysexits' EX_IOERR
    LOCKED = 75
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away before the output ended


class DbcliError(Exception):
    """Base of every error a user can cause."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None,
                 sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # kept from the driver error so callers can react without parsing text
        self.sqlstate = sqlstate

    def __str__(self) -> str:
        return self.message


class UsageError(DbcliError):
    exit_code = ExitCode.USAGE


class ConfigError(DbcliError):
    exit_code = ExitCode.CONFIG


class UnreachableError(DbcliError):
    """A server did not answer, or an operation ran past its timeout."""

    exit_code = ExitCode.UNREACHABLE


class InvalidInputError(DbcliError):
    exit_code = ExitCode.INVALID_INPUT


class NotFoundError(DbcliError):
    exit_code = ExitCode.NOT_FOUND


class ConflictError(DbcliError):
    exit_code = ExitCode.CONFLICT


class CheckFailedError(DbcliError):
    exit_code = ExitCode.CHECK_FAILED


class NotWritableError(DbcliError):
    """A file or directory cannot be created: permission denied, read-only file system."""

    exit_code = ExitCode.NOT_WRITABLE


class WriteFailedError(DbcliError):
    """Writing a file failed part way: no space left, quota, file size limit, I/O error."""

    exit_code = ExitCode.WRITE_FAILED


class LockedError(DbcliError):
    exit_code = ExitCode.LOCKED
