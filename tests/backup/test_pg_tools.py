"""The client tools' errors: psql's mapped as driver errors are (finding the tools and their
connection: tests/postgres/test_tools.py)."""

from __future__ import annotations

import pytest

from dbcli.backup.psql_session import psql_error
from dbcli.errors import DbcliError, InvalidInputError, NotFoundError, UnreachableError


@pytest.mark.parametrize(("stderr", "kind", "message"), [
    ("psql:<stdin>:4: ERROR:  57014: canceling statement due to statement timeout\nLOCATION:  ProcessInterrupts\n",
     UnreachableError, "statement timed out: canceling statement due to statement timeout"),
    ('psql:<stdin>:2: ERROR:  42501: permission denied for table t\n', InvalidInputError,
     "permission denied for table t"),
    ('psql: error: connection to server on socket "/tmp/.s.PGSQL.1" failed: No such file or directory\n'
     '\tIs the server running locally and accepting connections on that socket?\n', UnreachableError,
     'cannot connect to PostgreSQL: connection to server on socket "/tmp/.s.PGSQL.1" failed: '
     'No such file or directory'),
    ('psql: error: connection to server at "h" (10.0.0.1), port 5432 failed: FATAL:  database "x" does not exist\n',
     UnreachableError, 'cannot connect to PostgreSQL: connection to server at "h" (10.0.0.1), port 5432 failed: '
     'FATAL:  database "x" does not exist'),
    ("psql:<stdin>:1: FATAL:  3D000: database \"gone\" does not exist\n", NotFoundError,
     'database "gone" does not exist'),
    ("psql:<stdin>:9: server closed the connection unexpectedly\n\tThis probably means the server terminated "
     "abnormally\npsql:<stdin>:9: error: connection to server was lost\n", UnreachableError,
     "cannot connect to PostgreSQL: server closed the connection unexpectedly"),
    ("", DbcliError, "psql failed (exit 2): no message"),
])
def test_psql_errors_map_like_driver_errors(stderr: str, kind: type[DbcliError], message: str) -> None:
    error = psql_error(stderr, 3 if stderr else 2)
    assert type(error) is kind
    assert error.message == message

