"""Driver errors map to dbcli errors by SQLSTATE (psql's too: tests/backup/test_pg_tools.py)."""

from __future__ import annotations

import pytest
from psycopg import errors as pg

from dbcli.errors import ConflictError, DbcliError, InvalidInputError, NotFoundError, UnreachableError
from dbcli.postgres.errors import error_class, from_sqlstate, matches


@pytest.mark.parametrize(("sqlstate", "kind"), [
    ("23505", ConflictError), ("23503", ConflictError), ("23514", ConflictError), ("23000", ConflictError),
    ("40001", ConflictError), ("40P01", ConflictError), ("25006", ConflictError), ("55P03", ConflictError),
    ("22P02", InvalidInputError), ("22001", InvalidInputError), ("42P01", InvalidInputError),
    ("42501", InvalidInputError), ("42601", InvalidInputError), ("3D000", NotFoundError),
    ("08006", UnreachableError), ("08001", UnreachableError), ("57P01", UnreachableError),
    ("57P05", UnreachableError), ("57000", DbcliError), ("21000", DbcliError), ("3F000", DbcliError),
    ("P0001", DbcliError), ("40000", DbcliError), ("25001", DbcliError), ("XX000", DbcliError),
    ("23999", ConflictError), ("ZZ999", DbcliError),  # codes newer than psycopg: by their class
])
def test_exit_codes_by_sqlstate(sqlstate: str, kind: type[DbcliError]) -> None:
    assert error_class(sqlstate) is kind
    error = from_sqlstate(sqlstate, "text", "detail")
    assert type(error) is kind and (error.message, error.hint, error.sqlstate) == ("text", "detail", sqlstate)


def test_a_cancelled_statement_is_a_timeout() -> None:
    error = from_sqlstate("57014", "canceling statement due to statement timeout")
    assert type(error) is UnreachableError
    assert error.message == "statement timed out: canceling statement due to statement timeout"


def test_the_failing_row_is_not_repeated_in_the_hint() -> None:
    assert from_sqlstate("23502", "null value", "Failing row contains (1, secret).").hint is None


def test_matches_driver_errors_and_translated_ones() -> None:
    assert matches(pg.UndefinedTable("no such table"), pg.UndefinedTable)
    assert matches(from_sqlstate("42P01", "no such table"), pg.UniqueViolation, pg.UndefinedTable)
    assert not matches(from_sqlstate("42P01", "no such table"), pg.UniqueViolation)
    assert not matches(ValueError("x"), pg.UndefinedTable)
