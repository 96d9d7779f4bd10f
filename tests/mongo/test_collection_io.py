"""dbcli collection import | export: batches, duplicates, validation, upserts, formats, round trips."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result

Cli = Callable[..., Result]


@pytest.fixture
def cfg_file(mongo_config: Callable[..., Path]) -> Path:
    return mongo_config()


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i}", "user_id": 1 + i % 3, "type": "login",
             "timestamp": {"$date": f"2024-05-01T{i % 24:02d}:00:00Z"}, "day": "2024-05-01",
             "hour": f"2024-05-01T{i % 24:02d}", "data": {"ip": f"10.0.0.{i % 250}"}}
            for i in range(start, start + n)]


def _jsonl(docs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def test_import_jsonl_in_batches_counts_duplicates(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    coll_db.user_activities.create_index("event_id", unique=True)
    (tmp_path / "ev.jsonl").write_text(_jsonl(_events(25)))
    res = cli("collection", "import", "user_activities", "ev.jsonl", "--batch-size", "7", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == {"collection": "user_activities", "read": 25, "inserted": 25, "updated": 0, "unchanged": 0,
                          "duplicates": 0, "rejected": 0, "rejected_lines": []}
    (tmp_path / "ev2.jsonl").write_text(_jsonl(_events(10, start=20)))
    res = cli("collection", "import", "user_activities", "ev2.jsonl", "--batch-size", "4", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert (res.json()["inserted"], res.json()["duplicates"]) == (5, 5)
    assert coll_db.user_activities.count_documents({}) == 30
    import datetime as dt

    assert coll_db.user_activities.find_one({"event_id": "e1"})["timestamp"] == dt.datetime(2024, 5, 1, 1,
                                                                                             tzinfo=dt.UTC)


def test_import_invalid_document_refuses_everything(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    docs = _events(6)
    docs[3]["type"] = "Bad Type"
    del docs[5]["day"]
    (tmp_path / "ev.jsonl").write_text(_jsonl(docs))
    res = cli("collection", "import", "user_activities", "ev.jsonl", "--batch-size", "2")
    assert res.exit_code == 5
    assert res.stderr == ("Error: 2 document(s) violate the user_activities schema, nothing was imported: line 4: "
                          "type: 'Bad Type' does not match '^[a-z][a-z0-9_.-]{0,63}$' (and 1 more) "
                          "(hint: --skip-invalid imports the valid ones and reports the others)\n")
    assert "user_activities" not in coll_db.list_collection_names()
    res = cli("collection", "import", "user_activities", "ev.jsonl", "--skip-invalid", "-f", "json")
    assert res.exit_code == 0
    assert res.json()["inserted"] == 4 and res.json()["rejected"] == 2 and res.json()["rejected_lines"] == [4, 6]
    assert res.stderr.startswith("Warning: 2 document(s) skipped: line 4: type: 'Bad Type'")


def test_import_malformed_line_writes_nothing(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    text = _jsonl(_events(5)) + "{not json\n" + _jsonl(_events(2, start=5))
    (tmp_path / "ev.jsonl").write_text(text)
    res = cli("collection", "import", "anything", "ev.jsonl", "--batch-size", "2")
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: line 6: invalid JSON")
    assert "anything" not in coll_db.list_collection_names()


def test_import_json_array_from_stdin_and_csv(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    res = cli("collection", "import", "things", "-", "-f", "json",
              input=json.dumps([{"a": 1}, {"a": {"$numberLong": "2"}}]))
    assert res.exit_code == 0, res.stderr
    assert res.json()["inserted"] == 2
    (tmp_path / "t.csv").write_text("a,b\n3,x\n")
    res = cli("collection", "import", "things", "t.csv", "-q")
    assert res == Result(0, "", "")
    assert sorted(str(d["a"]) for d in coll_db.things.find()) == ["1", "2", "3"]


def test_import_stdin_in_batches(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "import", "things", "-", "--batch-size", "3", "-f", "json",
              input=_jsonl([{"i": i} for i in range(20)]))
    assert res.exit_code == 0, res.stderr
    assert res.json()["inserted"] == 20
    assert sorted(d["i"] for d in coll_db.things.find()) == list(range(20))


def test_import_upsert_key(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    coll_db.user_stats.insert_one({"user_id": 1, "activity_count": 1})
    (tmp_path / "s.jsonl").write_text(_jsonl([{"user_id": 1, "activity_count": 5}, {"user_id": 2, "activity_count": 2},
                                              {"user_id": 1, "activity_count": 5}]))
    res = cli("collection", "import", "user_stats", "s.jsonl", "--upsert-key", "user_id", "--batch-size", "2",
              "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == {"collection": "user_stats", "read": 3, "inserted": 1, "updated": 1, "unchanged": 1,
                          "duplicates": 0, "rejected": 0, "rejected_lines": []}
    assert sorted((d["user_id"], d["activity_count"]) for d in coll_db.user_stats.find()) == [(1, 5), (2, 2)]
    (tmp_path / "nokey.jsonl").write_text('{"activity_count": 1}\n')
    res = cli("collection", "import", "user_stats", "nokey.jsonl", "--upsert-key", "user_id")
    assert res.exit_code == 5
    assert "'user_id' is a required property" in res.stderr


def test_import_server_rejection_is_reported_with_line(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    # an array _id: refused by MongoDB and every FerretDB (a "$" field name is accepted by MongoDB 5+)
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n{"_id": [1], "b": 1}\n{"a": 2}\n')
    res = cli("collection", "import", "things", "x.jsonl", "-f", "json")
    assert res.exit_code == 5
    assert res.json()["rejected_lines"] == [2] and res.json()["inserted"] == 2
    assert res.stderr.startswith("Error: 1 document(s) rejected by the server: line 2: ")


def test_export_jsonl_relaxed_and_canonical(cfg_file: Path, cli: Cli, tmp_path: Path) -> None:
    cli("collection", "insert", "x", "--data", '{"_id": 1, "n": {"$numberLong": "5"}, "f": 2.5, '
        '"at": {"$date": "2024-05-01T10:00:00Z"}}', "-q")
    res = cli("collection", "export", "x")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {"_id": 1, "n": 5, "f": 2.5, "at": {"$date": "2024-05-01T10:00:00Z"}}
    assert res.stderr == "exported 1 document(s) from x\n"
    res = cli("collection", "export", "x", "--canonical")
    assert json.loads(res.stdout) == {"_id": {"$numberInt": "1"}, "n": {"$numberLong": "5"},
                                      "f": {"$numberDouble": "2.5"}, "at": {"$date": {"$numberLong": "1714557600000"}}}
    res = cli("collection", "export", "x", "-f", "json", "--fields", "f")
    assert json.loads(res.stdout) == [{"f": 2.5}]


def test_export_csv_flattens_nested_fields(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.x.insert_many([{"_id": 1, "u": {"name": "A", "tier": "gold"}, "tags": ["a", "b"]},
                           {"_id": 2, "u": {"name": "B, C"}, "extra": 1}])
    res = cli("collection", "export", "x", "-f", "csv")
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows == [["_id", "u.name", "u.tier", "tags", "extra"], ["1", "A", "gold", '["a","b"]', ""],
                    ["2", "B, C", "", "", "1"]]
    res = cli("collection", "export", "x", "-f", "csv", "--fields", "u.tier,u,_id", "--filter", '{"_id": 1}')
    assert list(csv.reader(io.StringIO(res.stdout))) == [["u.tier", "u", "_id"],
                                                          ["gold", '{"name":"A","tier":"gold"}', "1"]]
    assert cli("collection", "export", "x", "-f", "csv", "--canonical").exit_code == 2


def test_export_to_file_is_atomic_and_round_trips(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    import datetime as dt

    from bson import Int64, ObjectId

    docs = [{"_id": ObjectId(), "n": Int64(2**40), "at": dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
             "sub": {"k": [1, {"z": None}]}, "s": "é"} for _ in range(5)]
    coll_db.src.insert_many(docs)
    (tmp_path / "out").mkdir()
    res = cli("collection", "export", "src", "--canonical", "-o", "out/src.jsonl")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "exported 5 document(s) from src to out/src.jsonl\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["src.jsonl"]
    res = cli("collection", "import", "dst", "out/src.jsonl", "-q")
    assert res.exit_code == 0, res.stderr
    assert list(coll_db.dst.find().sort("_id", 1)) == list(coll_db.src.find().sort("_id", 1))
    # a failed export leaves no file behind
    res = cli("collection", "export", "src", "--filter", '{"$foo": 1}', "-o", "out/bad.jsonl")
    assert res.exit_code == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["src.jsonl"]


def test_import_upsert_later_line_wins_within_a_batch(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    lines = [{"k": i % 3, "v": i} for i in range(10)]
    (tmp_path / "u.jsonl").write_text(_jsonl(lines))
    res = cli("collection", "import", "kv", "u.jsonl", "--upsert-key", "k", "--batch-size", "100", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["inserted"] == 3 and res.json()["updated"] == 7
    assert sorted((d["k"], d["v"]) for d in coll_db.kv.find()) == [(0, 9), (1, 7), (2, 8)]


def test_import_big_jsonl_is_validated_in_parallel_parts(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from dbcli.mongo import spool

    monkeypatch.setattr(spool, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(spool, "MAX_WORKERS", 3)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    docs = _events(60)
    docs[44]["type"] = "Bad Type"
    (tmp_path / "ev.jsonl").write_text(_jsonl(docs[:30]) + "\n" + _jsonl(docs[30:]))  # a blank line 31
    assert len(spool.parallel_plan(str(tmp_path / "ev.jsonl"), None) or []) == 3
    res = cli("collection", "import", "user_activities", "ev.jsonl")
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: 1 document(s) violate the user_activities schema, nothing was imported: "
                                 "line 46: type: 'Bad Type'")
    assert "user_activities" not in coll_db.list_collection_names()
    res = cli("collection", "import", "user_activities", "ev.jsonl", "--skip-invalid", "--batch-size", "7",
              "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert (res.json()["read"], res.json()["inserted"], res.json()["rejected_lines"]) == (60, 59, [46])
    assert sorted(int(d["event_id"][1:]) for d in coll_db.user_activities.find()) == [i for i in range(60) if i != 44]
    (tmp_path / "bad.jsonl").write_text(_jsonl(docs[:50]) + "{oops\n" + _jsonl(docs[50:]))
    res = cli("collection", "import", "other", "bad.jsonl")
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: line 51: invalid JSON")


def test_import_stray_text_on_stdin_is_invalid_not_a_csv_header(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "import", "things", "-", input="this is not json\n")
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: line 1: invalid JSON")
    assert "things" not in coll_db.list_collection_names()
