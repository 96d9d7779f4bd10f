"""Driver errors as dbcli errors: the one place that maps PostgreSQL's SQLSTATE to an exit code.

The mapping is written with ``psycopg.errors`` classes: a few conditions mapped on their own,
then whole SQLSTATE classes (the first two characters of the code), each named by the condition
that stands for its class (code ``XX000``). Errors read from psql's stderr carry only the code;
they are mapped through the same table (:func:`from_sqlstate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from dbcli.config.model import Config
from dbcli.config.redact import redact_text
from dbcli.errors import ConflictError, DbcliError, InvalidInputError, NotFoundError, UnreachableError

if TYPE_CHECKING:
    import psycopg

# psycopg is imported when an error is mapped, not with this module: the backup path maps psql's
# errors by SQLSTATE and must not pay ~120 ms for the driver before pg_dump starts


@cache
def _tables() -> tuple[dict[type[psycopg.Error], type[DbcliError]], dict[type[psycopg.Error], type[DbcliError]]]:
    from psycopg import errors as pg

    # conditions whose exit code differs from their class's
    conditions: dict[type[psycopg.Error], type[DbcliError]] = {
        pg.AdminShutdown: UnreachableError,
        pg.CrashShutdown: UnreachableError,
        pg.CannotConnectNow: UnreachableError,
        pg.DatabaseDropped: UnreachableError,
        pg.IdleSessionTimeout: UnreachableError,
        pg.SerializationFailure: ConflictError,
        pg.DeadlockDetected: ConflictError,
        pg.ReadOnlySqlTransaction: ConflictError,
        pg.LockNotAvailable: ConflictError,
        pg.InvalidCatalogName: NotFoundError,
    }
    # whole SQLSTATE classes; any other class is a plain DbcliError (exit 1)
    classes: dict[type[psycopg.Error], type[DbcliError]] = {
        pg.ConnectionException: UnreachableError,  # 08
        pg.DataException: InvalidInputError,  # 22
        pg.IntegrityConstraintViolation: ConflictError,  # 23
        pg.SyntaxErrorOrAccessRuleViolation: InvalidInputError,  # 42
    }
    return conditions, classes


def _condition(sqlstate: str) -> type[psycopg.Error] | None:
    from psycopg import errors as pg

    try:
        return pg.lookup(sqlstate)
    except KeyError:  # a code newer than this psycopg
        return None


def error_class(sqlstate: str) -> type[DbcliError]:
    """The dbcli error class for a SQLSTATE code."""
    conditions, classes = _tables()
    condition = _condition(sqlstate)
    if condition is not None and condition in conditions:
        return conditions[condition]
    of_class = _condition(sqlstate[:2] + "000")
    return classes.get(of_class, DbcliError) if of_class is not None else DbcliError


def matches(error: BaseException, *conditions: type[psycopg.Error]) -> bool:
    """True when ``error`` is one of ``conditions`` (``psycopg.errors`` classes).

    ``error`` may be the driver's error or a :class:`DbcliError` that kept its SQLSTATE (one
    translated already, or read from psql's output).
    """
    if isinstance(error, conditions):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is not None and any(c.sqlstate == sqlstate for c in conditions)


def from_sqlstate(sqlstate: str | None, text: str, detail: str | None = None) -> DbcliError:
    """The dbcli error for a server error, by its SQLSTATE; ``text`` and ``detail`` already redacted."""
    if detail and detail.startswith("Failing row contains"):
        detail = None  # the whole row's values: not for a one-line message (they may be personal data)
    if sqlstate is None:
        return DbcliError(text, hint=detail)
    from psycopg import errors as pg

    if _condition(sqlstate) is pg.QueryCanceled:
        return UnreachableError(f"statement timed out: {text}", sqlstate=sqlstate)
    return error_class(sqlstate)(text, hint=detail, sqlstate=sqlstate)


def translate(e: Exception, cfg: Config | None = None) -> DbcliError:
    """The dbcli error for a driver error (its SQLSTATE kept); secrets redacted from the message."""
    import psycopg

    text = redact_text(str(e).strip()).splitlines()[0] if str(e).strip() else type(e).__name__
    sqlstate = getattr(e, "sqlstate", None)
    diag = getattr(e, "diag", None)
    detail = redact_text(diag.message_detail) if diag is not None and diag.message_detail else None
    if isinstance(e, psycopg.OperationalError) and sqlstate is None:
        return unreachable(text, cfg)
    return from_sqlstate(sqlstate, text, detail)


def unreachable(text: str, cfg: Config | None = None) -> UnreachableError:
    """A failed connection attempt; ``text`` is libpq's (already redacted) message."""
    where = "the embedded PostgreSQL" if cfg and cfg.postgres.embedded else "PostgreSQL"
    # libpq repeats "connection to server at ... failed:" per address; keep the reason
    return UnreachableError(f"cannot connect to {where}: {text.replace('connection failed: ', '')}")


@contextmanager
def errors_translated(cfg: Config | None = None) -> Iterator[None]:
    """Turn driver errors raised inside the block into dbcli errors."""
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        raise translate(e, cfg) from e
