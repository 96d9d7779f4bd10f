"""dbcli collection list | insert | find | count | update | delete | indexes, on FerretDB."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from tests.helpers import Result

Cli = Callable[..., Result]


@pytest.fixture
def cfg_file(mongo_config: Callable[..., Path]) -> Path:
    return mongo_config()


def test_insert_find_extended_json_round_trip(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    oid = "65f000000000000000000001"
    doc = {"_id": {"$oid": oid}, "at": {"$date": "2024-05-01T10:00:00Z"}, "n": {"$numberLong": "7"},
           "tags": ["a"], "nested": {"x": 1.5}}
    res = cli("collection", "insert", "notes", "--data", json.dumps(doc), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "inserted 1 document(s) into notes\n"
    stored = coll_db.notes.find_one()
    assert stored["_id"] == ObjectId(oid)
    assert stored["at"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    res = cli("collection", "find", "notes", "--filter", '{"at": {"$gte": {"$date": "2024-01-01T00:00:00Z"}}}',
              "-f", "jsonl")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {"_id": {"$oid": oid}, "at": {"$date": "2024-05-01T10:00:00Z"}, "n": 7,
                                      "tags": ["a"], "nested": {"x": 1.5}}
    res = cli("collection", "find", "notes", "--filter", json.dumps({"_id": {"$oid": oid}}), "-f", "json")
    assert [d["_id"] for d in res.json()] == [{"$oid": oid}]


def test_insert_many_prints_ids_and_creates_collection(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "insert", "fresh", "--data", '[{"a": 1}, {"a": 2}]', "-f", "json")
    assert res.exit_code == 0, res.stderr
    rows = res.json()
    assert [r["a"] for r in rows] == [1, 2] and all("$oid" in r["_id"] for r in rows)
    assert coll_db.fresh.count_documents({}) == 2


def test_insert_from_file_and_stdin(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    (tmp_path / "docs.jsonl").write_text('{"a": 1}\n{"a": {"$numberLong": "2"}}\n')
    assert cli("collection", "insert", "c", "--file", "docs.jsonl", "-q").exit_code == 0
    res = cli("collection", "insert", "c", "-q", input='[{"a": 3}]')
    assert res == Result(0, "", "")
    assert sorted(d["a"] for d in coll_db.c.find()) == [1, 2, 3]


def test_find_projection_sort_limit_skip(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_many([{"i": i, "sq": i * i, "x": "y"} for i in range(6)])
    res = cli("collection", "find", "items", "--filter", '{"i": {"$gte": 1}}', "--projection",
              '{"_id": 0, "i": 1, "sq": 1}', "--sort", '{"i": -1}', "--limit", "2", "--skip", "1", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == [{"i": 4, "sq": 16}, {"i": 3, "sq": 9}]


def test_count_and_list(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_many([{"i": i} for i in range(5)])
    res = cli("collection", "count", "items", "--filter", '{"i": {"$lt": 2}}', "-f", "json")
    assert res.json() == {"collection": "items", "count": 2}
    res = cli("collection", "list", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == [{"collection": "items", "documents": 5, "indexes": 1, "schema": "",
                           "encrypted_fields": ""}]


@pytest.mark.parametrize("command", [["find", "itmes"], ["count", "itmes"], ["export", "itmes"],
                                     ["indexes", "itmes"], ["delete", "itmes", "--all"],
                                     ["update", "itmes", "--all", "--update", '{"$set": {"a": 1}}']])
def test_unknown_collection_exits_5_with_closest_match(cfg_file: Path, cli: Cli, coll_db: Any,
                                                       command: list[str]) -> None:
    coll_db.items.insert_one({"i": 1})
    res = cli("collection", *command)
    assert res.exit_code == 5
    assert res.stdout == ""
    assert res.stderr == "Error: unknown collection 'itmes' (hint: did you mean 'items'?)\n"


@pytest.mark.parametrize(("option", "value"), [("--filter", "{bad"), ("--projection", "[1"),
                                               ("--sort", '{"a": 2}'), ("--filter", "[1, 2]")])
def test_invalid_json_names_the_option(cfg_file: Path, cli: Cli, option: str, value: str) -> None:
    res = cli("collection", "find", "items", option, value)
    assert res.exit_code == 5
    assert res.stderr.startswith(f"Error: {option}: ")


def test_filter_rejected_by_server_is_invalid_input(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_one({"i": 1})
    res = cli("collection", "find", "items", "--filter", '{"$where": "1"}', "-f", "json")
    assert res.exit_code == 5
    assert res.stdout == ""
    assert "full error" not in res.stderr


def test_update_requires_operators(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_one({"i": 1})
    res = cli("collection", "update", "items", "--filter", '{"i": 1}', "--update", '{"i": 2}')
    assert res.exit_code == 5
    assert res.stderr == ('Error: --update: use update operators (for example {"$set": {"i": ...}}), '
                          "not a replacement document\n")
    assert coll_db.items.find_one()["i"] == 1


@pytest.mark.parametrize("command", ["update", "delete"])
@pytest.mark.parametrize("filt", [None, "{}"])
def test_unfiltered_update_delete_refused_with_7(cfg_file: Path, cli: Cli, coll_db: Any, command: str,
                                                 filt: str | None) -> None:
    coll_db.items.insert_many([{"i": 1}, {"i": 2}])
    args = ["collection", command, "items"]
    if filt is not None:
        args += ["--filter", filt]
    if command == "update":
        args += ["--update", '{"$set": {"z": 1}}']
    res = cli(*args)
    assert res.exit_code == 7
    assert res.stderr == (f"Error: refusing to {command} every document of 'items' without --filter "
                          "(hint: pass --all to mean it)\n")
    assert coll_db.items.count_documents({"z": 1}) == 0 and coll_db.items.count_documents({}) == 2


def test_update_all_one_dry_run_upsert(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_many([{"i": 1}, {"i": 2}, {"i": 3}])
    res = cli("collection", "update", "items", "--filter", '{"i": {"$gte": 2}}', "--update",
              '{"$set": {"big": true}}', "--dry-run", "-f", "json")
    assert res.exit_code == 0
    assert res.json()["matched"] == 2 and res.json()["dry_run"] is True
    assert "dry run: 2 document(s) match; nothing changed" in res.stderr
    assert coll_db.items.count_documents({"big": True}) == 0
    res = cli("collection", "update", "items", "--all", "--update", '{"$inc": {"i": 10}}', "-f", "json")
    assert res.json() == {"collection": "items", "matched": 3, "modified": 3, "upserted_id": None,
                          "dry_run": False}
    res = cli("collection", "update", "items", "--all", "--one", "--update", '{"$set": {"first": 1}}', "-f", "json")
    assert res.json()["modified"] == 1
    res = cli("collection", "update", "items", "--filter", '{"i": 99}', "--upsert", "--update",
              '{"$set": {"new": true}}', "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert "$oid" in res.json()["upserted_id"]
    assert coll_db.items.find_one({"i": 99})["new"] is True


def test_upsert_may_create_the_collection(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "update", "brand_new", "--filter", '{"k": "a"}', "--upsert",
              "--update", '{"$set": {"v": 1}}', "-q")
    assert res.exit_code == 0, res.stderr
    assert coll_db.brand_new.find_one({}, {"_id": 0}) == {"k": "a", "v": 1}


def test_delete_dry_run_one_and_filter(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_many([{"i": i} for i in range(4)])
    res = cli("collection", "delete", "items", "--filter", '{"i": {"$lt": 2}}', "--dry-run", "-f", "json")
    assert res.json() == {"collection": "items", "matched": 2, "deleted": 0, "dry_run": True}
    assert coll_db.items.count_documents({}) == 4
    res = cli("collection", "delete", "items", "--filter", '{"i": {"$lt": 2}}', "--one", "-f", "json")
    assert res.json()["deleted"] == 1
    res = cli("collection", "delete", "items", "--all", "-f", "json")
    assert res.json()["deleted"] == 3
    assert coll_db.items.count_documents({}) == 0


def test_duplicate_key_on_insert_exits_7(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_one({"_id": 1})
    from dbcli.mongo.topology import topology

    res = cli("collection", "insert", "items", "--data", '[{"_id": 2}, {"_id": 1}, {"_id": 3}]')
    assert res.exit_code == 7
    if topology(coll_db.client).has_transactions:  # DBCLI_TEST_MONGO_URI: a replica set or mongos
        assert res.stderr == "Error: document 2: duplicate key (nothing was inserted)\n"
        assert sorted(d["_id"] for d in coll_db.items.find()) == [1]
        return
    assert res.stderr == "Error: document 2: duplicate key (1 document(s) before it were inserted)\n"
    assert sorted(d["_id"] for d in coll_db.items.find()) == [1, 2]


def test_indexes_list_create_drop(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.items.insert_one({"a": 1})
    res = cli("collection", "indexes", "items", "--create", '{"a": 1, "b": -1}', "--name", "ab", "--unique",
              "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert {"name": "ab", "keys": "a:1, b:-1", "unique": True, "declared": False} in res.json()
    res = cli("collection", "indexes", "items", "--drop", "ba")
    assert res.exit_code == 6
    assert res.stderr == "Error: collection 'items' has no index 'ba' (hint: did you mean 'ab'?)\n"
    assert cli("collection", "indexes", "items", "--drop", "_id_").exit_code == 7
    res = cli("collection", "indexes", "items", "--drop", "ab", "-f", "json")
    assert [r["name"] for r in res.json()] == ["_id_"]


# ---- client-side JSON Schema (FerretDB enforces none) ------------------------------------------

def test_insert_violating_schema_is_refused_and_nothing_written(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "insert", "user_stats", "--data", '[{"user_id": 1, "activity_count": 0}, {"user_id": 2}]')
    assert res.exit_code == 5
    assert res.stderr == ("Error: document 2 violates the user_stats schema: 'activity_count' is a required "
                          "property; nothing was inserted\n")
    assert "user_stats" not in coll_db.list_collection_names()


def test_insert_from_file_names_the_line(cfg_file: Path, cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text('{"user_id": 1, "activity_count": 0}\n\n{"user_id": 0, "activity_count": 1}\n')
    res = cli("collection", "insert", "user_stats", "--file", "s.jsonl")
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: line 3 violates the user_stats schema: user_id: 0 is less than the "
                                 "minimum of 1")


def test_update_validated_against_schema_before_writing(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.user_stats.insert_many([{"user_id": 1, "activity_count": 3}, {"user_id": 2, "activity_count": 5}])
    res = cli("collection", "update", "user_stats", "--all", "--update", '{"$inc": {"activity_count": -4}}')
    assert res.exit_code == 5
    assert res.stderr == ("Error: the update would make document _id="
                          f"{{\"$oid\":\"{coll_db.user_stats.find_one({'user_id': 1})['_id']}\"}} violate the "
                          "user_stats schema: activity_count: -1 is less than the minimum of 0; nothing was changed\n")
    assert sorted(d["activity_count"] for d in coll_db.user_stats.find()) == [3, 5]
    res = cli("collection", "update", "user_stats", "--filter", '{"user_id": 2}',
              "--update", '{"$unset": {"activity_count": ""}}')
    assert res.exit_code == 5 and "'activity_count' is a required property" in res.stderr
    res = cli("collection", "update", "user_stats", "--all", "--update",
              '{"$inc": {"activity_count": 1, "counts.login": 1}, "$set": {"user": {"name": "A", "tier": "gold"}}}',
              "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["modified"] == 2
    assert coll_db.user_stats.find_one({"user_id": 1}, {"_id": 0}) == {
        "user_id": 1, "activity_count": 4, "counts": {"login": 1}, "user": {"name": "A", "tier": "gold"}}


def test_upsert_on_schema_collection_validates_the_new_document(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    res = cli("collection", "update", "user_stats", "--filter", '{"user_id": 7}', "--upsert",
              "--update", '{"$set": {"counts": {}}}')
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: the upserted document would violate the user_stats schema: "
                                 "'activity_count' is a required property")
    res = cli("collection", "update", "user_stats", "--filter", '{"user_id": 7}', "--upsert",
              "--update", '{"$inc": {"activity_count": 1}}', "-q")
    assert res.exit_code == 0, res.stderr
    assert coll_db.user_stats.find_one({}, {"_id": 0}) == {"user_id": 7, "activity_count": 1}


def test_unsupported_operator_on_schema_collection_is_refused(cfg_file: Path, cli: Cli, coll_db: Any) -> None:
    coll_db.user_stats.insert_one({"user_id": 1, "activity_count": 1, "tags": ["a"]})
    res = cli("collection", "update", "user_stats", "--all", "--update", '{"$set": {"tags.$[]": "b"}}')
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: the path 'tags.$[]' cannot be checked against the collection's schema")


def test_demo_step(mongo_config: Callable[..., Path], load_cfg: Callable[..., Any], coll_db: Any) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo.documents import step as demo_step

    mongo_config()
    out, err = io.StringIO(), io.StringIO()
    demo_step(load_cfg(), Output(fmt="json", stdout=out, stderr=err))
    (doc,) = json.loads(out.getvalue())
    assert doc["tags"] == ["demo", "updated"]
    assert "dbcli_demo_notes" not in coll_db.list_collection_names()


def test_demo_step_without_mongo(tmp_path: Path, load_cfg: Callable[..., Any]) -> None:
    import io

    from dbcli.output import Output
    from dbcli.shop.demo.documents import step as demo_step

    (tmp_path / "dbcli.yaml").write_text("postgres: {dsn: 'host=localhost'}\n")
    err = io.StringIO()
    demo_step(load_cfg(), Output(fmt="json", stdout=io.StringIO(), stderr=err))
    assert err.getvalue() == "no MongoDB configured: the collection step is skipped\n"
