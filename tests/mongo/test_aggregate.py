"""dbcli collection aggregate | distinct, on FerretDB (issue 16, item 4).

FerretDB 1.24 computes only the first accumulator of a $group, so each $group here has one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbcli.errors import InvalidInputError
from dbcli.mongo.aggregate import check_pipeline, read_pipeline
from tests.fix_collection import KEY_A
from tests.helpers import Result

Cli = Callable[..., Result]

EVENTS = [{"user_id": 1, "type": "login", "n": 2}, {"user_id": 1, "type": "login", "n": 3},
          {"user_id": 2, "type": "login", "n": 5}, {"user_id": 2, "type": "logout", "n": 7}]


@pytest.fixture
def events(mongo_config: Callable[..., Path], coll_db: Any) -> Any:
    mongo_config()
    coll_db.events.insert_many([dict(e) for e in EVENTS])
    return coll_db


def test_match_group_every_format(events: Any, cli: Cli, tmp_path: Path) -> None:
    pipeline = json.dumps([{"$match": {"type": "login"}}, {"$group": {"_id": "$user_id", "total": {"$sum": "$n"}}},
                           {"$sort": {"_id": 1}}])
    res = cli("collection", "aggregate", "events", "--pipeline", pipeline, "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == [{"_id": 1, "total": 5}, {"_id": 2, "total": 5}]
    (tmp_path / "p.json").write_text(pipeline)
    res = cli("collection", "aggregate", "events", "--pipeline", "@p.json", "-f", "jsonl")
    assert [json.loads(line) for line in res.stdout.splitlines()] == [{"_id": 1, "total": 5}, {"_id": 2, "total": 5}]
    res = cli("collection", "aggregate", "events", "--pipeline", pipeline, "-f", "csv")
    assert res.stdout.splitlines() == ["_id,total", "1,5", "2,5"]
    res = cli("collection", "aggregate", "events", "--pipeline", pipeline, "-f", "table")
    assert res.exit_code == 0 and "total" in res.stdout


def test_extended_json_in_and_out(events: Any, cli: Cli) -> None:
    events.dated.insert_one({"k": 1})
    pipeline = '[{"$match": {"k": {"$numberLong": "1"}}}, {"$project": {"_id": 0, "k": 1}}]'
    res = cli("collection", "aggregate", "dated", "--pipeline", pipeline, "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json() == [{"k": 1}]
    res = cli("collection", "aggregate", "events", "--pipeline",
              '[{"$match": {"_id": {"$type": "objectId"}}}, {"$limit": 1}, {"$project": {"_id": 1}}]', "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert "$oid" in res.json()[0]["_id"]


@pytest.mark.parametrize("stage", [{"$out": "copy"}, {"$merge": {"into": "copy"}}])
def test_write_stages_refused_without_write(events: Any, cli: Cli, stage: dict[str, Any]) -> None:
    res = cli("collection", "aggregate", "events", "--pipeline", json.dumps([{"$match": {}}, stage]))
    assert res.exit_code == 7
    assert f"{next(iter(stage))} writes to a collection" in res.stderr and "--write" in res.stderr
    assert res.stdout == ""
    assert "copy" not in events.list_collection_names()


def test_out_with_write_reaches_the_server(events: Any, cli: Cli) -> None:
    # FerretDB 1.24 implements no $out: with --write dbcli's guard lets it through and the
    # server's own refusal comes back as one line (exit 5); on MongoDB the stage would run
    res = cli("collection", "aggregate", "events", "--pipeline",
              '[{"$match": {"type": "logout"}}, {"$out": "logouts"}]', "--write", "-q")
    assert res.exit_code in (0, 5), res.stderr
    assert "--write" not in res.stderr and len(res.stderr.splitlines()) <= 1


@pytest.mark.parametrize("pipeline, operator", [
    ([{"$match": {"$where": "this.n > 1"}}], "$where"),
    ([{"$addFields": {"x": {"$function": {"body": "function() {return 1}", "args": [], "lang": "js"}}}}],
     "$function"),
    ([{"$group": {"_id": None, "x": {"$accumulator": {"init": "function() {}"}}}}], "$accumulator"),
    ([{"$facet": {"a": [{"$match": {"$where": "1"}}]}}], "$where"),
    ([{"$lookup": {"from": "x", "as": "y", "pipeline": [{"$match": {"$where": "1"}}]}}], "$where"),
    ([{"$unionWith": {"coll": "x", "pipeline": [{"$addFields": {"z": {"$function": {}}}}]}}], "$function"),
])
def test_javascript_refused_always(events: Any, cli: Cli, pipeline: list[Any], operator: str) -> None:
    for extra in ([], ["--write"]):
        res = cli("collection", "aggregate", "events", "--pipeline", json.dumps(pipeline), *extra)
        assert res.exit_code == 5
        assert res.stderr.splitlines()[0].endswith(f"{operator} is refused: it runs JavaScript on the server")


def test_nested_write_stage_refused(events: Any, cli: Cli) -> None:
    pipeline = [{"$facet": {"a": [{"$out": "copy"}]}}]
    res = cli("collection", "aggregate", "events", "--pipeline", json.dumps(pipeline))
    assert res.exit_code == 7


@pytest.mark.parametrize("text, problem", [
    ('{"$match": {}}', "expected a JSON array of stages"),
    ('[{"$match": {}}, 3]', "stage 2 must be an object with one $-operator key"),
    ('[{"$match": {}, "$limit": 1}]', "stage 1 must be an object"),
    ('[{"match": {}}]', "stage 1 must be an object"),
    ("[{", "invalid JSON"),
    ("@missing.json", "cannot read missing.json"),
])
def test_malformed_pipeline(events: Any, cli: Cli, text: str, problem: str) -> None:
    res = cli("collection", "aggregate", "events", "--pipeline", text)
    assert res.exit_code == 5
    assert problem in res.stderr and len(res.stderr.splitlines()) <= 2


def test_unknown_collection_and_server_rejection(events: Any, cli: Cli) -> None:
    res = cli("collection", "aggregate", "nope", "--pipeline", "[]")
    assert res.exit_code == 5 and "unknown collection 'nope'" in res.stderr
    res = cli("collection", "aggregate", "events", "--pipeline", '[{"$nosuchstage": {}}]')
    assert res.exit_code == 5 and res.stdout == ""


def test_pipeline_checks_unit() -> None:
    stages = read_pipeline('[{"$merge": {"into": {"db": "d", "coll": "t"}}}, {"$out": "u"}]')
    assert check_pipeline(stages, write=True) == ["t", "u"]
    with pytest.raises(InvalidInputError):
        check_pipeline(read_pipeline('[{"$project": {"a": {"$function": {}}}}]'), write=True)


def test_distinct_every_format(events: Any, cli: Cli) -> None:
    res = cli("collection", "distinct", "events", "type", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert sorted(r["value"] for r in res.json()) == ["login", "logout"]
    res = cli("collection", "distinct", "events", "user_id", "--filter", '{"type": "logout"}', "-f", "csv")
    assert res.stdout.splitlines() == ["value", "2"]
    res = cli("collection", "distinct", "events", "n", "--filter", '{"user_id": 1}', "-f", "jsonl")
    assert sorted(json.loads(line)["value"] for line in res.stdout.splitlines()) == [2, 3]
    res = cli("collection", "distinct", "events", "type", "-f", "table")
    assert res.exit_code == 0 and "logout" in res.stdout


def test_distinct_bad_input(events: Any, cli: Cli) -> None:
    res = cli("collection", "distinct", "events", "$type")
    assert res.exit_code == 5 and "invalid field name" in res.stderr
    res = cli("collection", "distinct", "nope", "type")
    assert res.exit_code == 5 and "unknown collection" in res.stderr
    res = cli("collection", "distinct", "events", "type", "--filter", "[1]")
    assert res.exit_code == 5 and "--filter: expected a JSON object" in res.stderr


def test_encrypted_fields(mongo_config: Callable[..., Path], cli: Cli) -> None:
    mongo_config(encryption={"key": KEY_A, "key_id": "a", "fields": {"events": ["secret"]}})
    res = cli("collection", "insert", "events", "--data", '[{"_id": 1, "k": "x", "secret": "s"}, '
              '{"_id": 2, "k": "x", "secret": "s"}]', "-q")
    assert res.exit_code == 0, res.stderr
    # documents that keep the encrypted field come out decrypted, as with find
    res = cli("collection", "aggregate", "events", "--pipeline", '[{"$sort": {"_id": 1}}]', "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert [d["secret"] for d in res.json()] == ["s", "s"]
    # ciphertexts never compare: matching on them or asking their distinct values is refused
    res = cli("collection", "aggregate", "events", "--pipeline", '[{"$match": {"secret": "s"}}]')
    assert res.exit_code == 5 and "field events.secret is encrypted" in res.stderr
    res = cli("collection", "distinct", "events", "secret")
    assert res.exit_code == 5 and "field events.secret is encrypted" in res.stderr
    res = cli("collection", "distinct", "events", "k", "-f", "json")
    assert res.json() == [{"value": "x"}]
