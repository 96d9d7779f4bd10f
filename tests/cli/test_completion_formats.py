"""--format values complete as the shells ask for them (issue 16 item 3): the option every
data-printing command shares, and the global one."""

from __future__ import annotations

import pytest

from tests.cli.test_completion import bash_complete


@pytest.mark.parametrize(("line", "expected"), [
    ("dbcli sql x -f ", ["table", "json", "jsonl", "csv"]),
    ("dbcli table find users --format j", ["json", "jsonl"]),
    ("dbcli -f c", ["csv"]),
    ("dbcli --format ", ["table", "json", "jsonl", "csv"]),
])
def test_format_values_complete(line: str, expected: list[str]) -> None:
    assert bash_complete(line) == expected
