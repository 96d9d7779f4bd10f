"""Replays of holes in read-only mode: text the server reads as code that dbcli's tokenizer read as a comment or
string or a differently-spelled name, so a refused statement ran in read-only mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbcli.postgres.sql import split
from tests.fix_tables import Shop


@pytest.mark.parametrize("text", [
    # PostgreSQL nests block comments: the first */ does not end this one, the ' after it is code
    "/* /* */ ' */ copy (select 1) to program 'touch {out}' -- '\n(format csv)",
    # a -- comment ends at a carriage return too
    "select 1;\n--\rcopy (select 1) to program 'touch {out}'\n(format csv)",
    # a Unicode-escaped name is lo_export
    "select U&\"lo\\005fexport\"(0, '{out}')",
    "select U&\"lo!005fexport\" UESCAPE '!' (0, '{out}')",
    "select U&\"loz005fexport\" /* between */ UESCAPE 'z' (0, '{out}')",
    # a $$ quote (empty tag) or a non-ASCII tag: the ' inside it is no string start
    "select $$'$$, lo_export(0, '{out}') --'",
    "select $é$ ' $é$, lo_export(0, '{out}') --'",
    # query_to_xml runs SQL text that no tokenizer sees
    "select query_to_xml('select lo_export(0, ''{out}'')', true, false, '')",
])
def test_hidden_refused_statements_are_found(shop: Shop, cli: Any, tmp_path: Path, text: str) -> None:
    out = tmp_path / "pwned"
    result = cli("sql", text.format(out=out), "-f", "json")
    assert result.exit_code == 7 and result.stdout == "" and "refused" in result.stderr, result.stderr
    assert not out.exists()


def test_dollar_quotes_with_an_empty_or_non_ascii_tag_are_not_split() -> None:
    assert split("select $$a;b$$ as x; select $é$;$é$; /* ; /* ; */ ; */ select 2") == [
        "select $$a;b$$ as x", "select $é$;$é$", "/* ; /* ; */ ; */ select 2"]
