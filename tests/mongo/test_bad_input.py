"""Bad input to the collection commands, as issue 15 found it: documents over the server's
maxBsonObjectSize, and Extended JSON that bson cannot parse ($oid "zz", a bad $numberDecimal...).
Each is exit 5 naming the line or the option, with nothing stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result

Cli = Callable[..., Result]
BIG = "x" * (17 << 20)  # 17 MiB: FerretDB stores it, every driver refuses to read it back


@pytest.fixture
def cfg_file(mongo_config: Callable[..., Path]) -> Path:
    return mongo_config()


def _big_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"n": 1}) + "\n" + json.dumps({"n": 2, "big": BIG}) + "\n" + json.dumps({"n": 3}) + "\n")
    return path


def test_import_of_a_document_over_the_size_limit_stores_nothing(cfg_file: Path, cli: Cli, tmp_path: Path,
                                                                  coll_db: Any) -> None:
    path = _big_file(tmp_path)  # over 8 MiB: validated in parallel parts
    res = cli("collection", "import", "docs", str(path))
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: 1 document(s) cannot be imported, nothing was imported: line 2: the "
                                 "document is 17825831 bytes of BSON, over the server's limit of 16777216 "
                                 "(maxBsonObjectSize)"), res.stderr
    assert "docs" not in coll_db.list_collection_names()
    res = cli("collection", "import", "docs", "-", input=path.read_text())  # one pass, from stdin
    assert res.exit_code == 5 and "line 2: the document is 17825831 bytes" in res.stderr
    assert "docs" not in coll_db.list_collection_names()
    res = cli("collection", "import", "docs", str(path), "--skip-invalid", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert (res.json()["inserted"], res.json()["rejected_lines"]) == (2, [2])
    assert res.stderr.startswith("Warning: 1 document(s) skipped: line 2: the document is 17825831 bytes")
    assert sorted(d["n"] for d in coll_db.docs.find()) == [1, 3]


def test_insert_of_a_document_over_the_size_limit_stores_nothing(cfg_file: Path, cli: Cli, tmp_path: Path,
                                                                  coll_db: Any) -> None:
    path = _big_file(tmp_path)
    res = cli("collection", "insert", "docs", "--file", str(path))
    assert res.exit_code == 5
    assert res.stderr == ("Error: line 2: the document is 17825831 bytes of BSON, over the server's limit of "
                          "16777216 (maxBsonObjectSize); nothing was inserted\n")
    assert "docs" not in coll_db.list_collection_names()


BAD_VALUES = [
    ('{"$oid": "zz"}', "'zz' is not a valid ObjectId"),
    ('{"$numberDecimal": "x1"}', "invalid $numberDecimal value"),
    ('{"$date": "2024-13-45T00:00:00Z"}', "does not match format"),
    ('{"$date": {"$numberLong": "99999999999999999999"}}', "Python int too large"),
    ('{"$minKey": 2}', "$minKey value must be 1"),
]


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_bad_extended_json_in_an_import_names_the_line(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any,
                                                       value: str, why: str) -> None:
    (tmp_path / "ev.jsonl").write_text(f'{{"n": 1}}\n{{"n": 2, "v": {value}}}\n')
    res = cli("collection", "import", "docs", "ev.jsonl")
    assert res.exit_code == 5, res.stderr
    assert res.stderr.startswith("Error: line 2: invalid JSON (") and why in res.stderr, res.stderr
    res = cli("collection", "import", "docs", "-", "--format", "json", input=f'[{{"n": 1}}, {{"v": {value}}}]')
    assert res.exit_code == 5 and res.stderr.startswith("Error: invalid JSON (") and why in res.stderr, res.stderr
    res = cli("collection", "insert", "docs", "--file", "ev.jsonl")
    assert res.exit_code == 5 and res.stderr.startswith("Error: line 2: invalid JSON ("), res.stderr
    assert "docs" not in coll_db.list_collection_names()


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_bad_extended_json_in_an_option_names_the_option(cfg_file: Path, cli: Cli, coll_db: Any,
                                                         value: str, why: str) -> None:
    res = cli("collection", "insert", "docs", "--data", f'{{"v": {value}}}')
    assert res.exit_code == 5 and res.stderr.startswith("Error: --data: invalid JSON (") and why in res.stderr
    res = cli("collection", "find", "docs", "--filter", f'{{"v": {value}}}')
    assert res.exit_code == 5 and res.stderr.startswith("Error: --filter: invalid JSON (") and why in res.stderr
    assert "docs" not in coll_db.list_collection_names()
