"""Pure parts of the collection layer: parsing, client-side update evaluation, the schema check."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from bson import ObjectId

from dbcli.errors import InvalidInputError
from dbcli.mongo import query, update_sim
from dbcli.mongo.json_schema import checker
from dbcli.schema.files import CollectionSpec, collection_specs


def test_parse_update_and_sort() -> None:
    assert query.parse_update('{"$set": {"a": {"$date": "2024-01-01T00:00:00Z"}}}') == {
        "$set": {"a": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}}
    with pytest.raises(InvalidInputError, match=r"^--update: \$set takes a JSON object of fields$"):
        query.parse_update('{"$set": 1}')
    with pytest.raises(InvalidInputError, match="expected a JSON object of update operators"):
        query.parse_update("[]")
    assert query.parse_sort('{"a": 1, "b": -1}') == [("a", 1), ("b", -1)]
    with pytest.raises(InvalidInputError, match=r"^--sort: direction of 'a' must be 1 or -1$"):
        query.parse_sort('{"a": true}')
    with pytest.raises(InvalidInputError, match=r"^--filter: invalid JSON"):
        query.parse_object('{"_id": {"$oid": "nothex"}}', "--filter")


@pytest.mark.parametrize("name", ["", "a$b", "system.x", "x\x00"])
def test_bad_collection_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid collection name"):
        query.check_name(name)


def test_apply_operators() -> None:
    doc = {"_id": 1, "n": 2, "tags": ["a"], "sub": {"x": 1}, "old": 5}
    out = update_sim.apply(doc, {
        "$set": {"sub.y": 2, "new.deep": True}, "$inc": {"n": 3, "missing": 1}, "$mul": {"sub.x": 4},
        "$min": {"old": 1}, "$max": {"top": 9}, "$rename": {"old": "renamed"}, "$push": {"tags": {"$each": ["b", "c"],
                                                                                                    "$slice": -2}},
        "$addToSet": {"set": {"$each": [1, 1, 2]}}, "$unset": {"_gone": ""}})
    assert out == {"_id": 1, "n": 5, "tags": ["b", "c"], "sub": {"x": 4, "y": 2}, "new": {"deep": True},
                   "missing": 1, "renamed": 1, "top": 9, "set": [1, 2]}
    assert doc["tags"] == ["a"]  # the input is untouched
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert update_sim.apply({"a": [1, 2, 1]}, {"$pull": {"a": 1}, "$currentDate": {"at": True}}, now=now) == {
        "a": [2], "at": now}
    assert update_sim.apply({}, {"$setOnInsert": {"a": 1}}) == {}
    assert update_sim.apply({}, {"$setOnInsert": {"a": 1}}, inserting=True) == {"a": 1}


@pytest.mark.parametrize("update", [{"$set": {"a.$": 1}}, {"$pull": {"a": {"$gt": 1}}}, {"$bit": {"a": {"and": 1}}},
                                    {"$push": {"a": {"$each": [1], "$sort": 1}}}])
def test_apply_refuses_what_it_cannot_evaluate(update: dict[str, Any]) -> None:
    with pytest.raises(update_sim.Unsupported):
        update_sim.apply({"a": [1]}, update)


def test_upsert_base_takes_equalities() -> None:
    assert update_sim.upsert_base({"a": 1, "b.c": 2, "d": {"$gt": 1}, "e": {"$eq": 3}, "$and": [{"f": 4}],
                                   "$or": [{"g": 1}]}) == {"a": 1, "b": {"c": 2}, "e": 3, "f": 4}


SCALARS: list[Any] = [None, True, 0, -1, 5, 2.5, 7.0, "", "login", "gold", "tin", "2024-05-01", "2024-13-01",
                      "2024-05-01T10", "x" * 130, "Bad Type", "page.view", dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                      ObjectId()]
TEMPLATES: dict[str, dict[str, Any]] = {
    "user_activities": {"event_id": "e1", "user_id": 3, "type": "page.view", "timestamp": dt.datetime.now(dt.UTC),
                        "day": "2024-05-01", "hour": "2024-05-01T10", "data": {"ip": "x"},
                        "user": {"name": "A", "tier": "gold"}},
    "user_stats": {"user_id": 1, "activity_count": 2, "counts": {"login": 1}, "user": {"name": "A", "tier": "gold"}},
    "activity_buckets": {"user_id": 1, "hour": "2024-05-01T10", "seq": 0, "count": 1,
                         "events": [{"event_id": "e1", "type": "login", "ts": dt.datetime.now(dt.UTC)}]},
}


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 2 else 8)
    if kind < 8:
        return rng.choice(SCALARS)
    if kind == 8:
        return {k: _random_value(rng, depth + 1) for k in rng.sample(["name", "tier", "login", "ip", "x"],
                                                                      rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]


def _mutate(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    for _ in range(rng.randrange(3)):
        target = out
        if rng.random() < 0.3:
            nested = [v for v in out.values() if isinstance(v, dict)]
            target = rng.choice(nested) if nested else out
        key = rng.choice([*target, "extra"]) if target else "extra"
        if rng.random() < 0.2:
            target.pop(key, None)
        else:
            target[key] = _random_value(rng)
    return out


def test_schema_check_agrees_with_jsonschema() -> None:
    """fastjsonschema answers first; whatever it says, the verdict and the message are jsonschema's."""
    specs = collection_specs(_cfg())
    rng = random.Random(7)
    for name, template in TEMPLATES.items():
        spec = specs[name]
        check = checker(spec)
        assert check(template) is None and spec.problem(template) is None
        valid = invalid = 0
        for _ in range(1500):
            doc = _mutate(rng, template)
            expected = spec.problem(doc)
            assert check(doc) == expected, (name, doc)
            valid += expected is None
            invalid += expected is not None
        assert valid > 100 and invalid > 100  # both sides of the line were exercised


def _cfg() -> Any:
    from dbcli.config.load import load_config

    return load_config()


def test_schema_check_beyond_the_shop_schemas() -> None:
    def spec(schema: dict[str, Any]) -> CollectionSpec:
        return CollectionSpec(name="t", description="", indexes=[], json_schema=schema)

    either = checker(spec({"type": "object", "properties": {"n": {"anyOf": [{"type": "string"}, {"minimum": 5}]}}}))
    assert either({"n": "x"}) is None and either({"n": 7}) is None
    assert either({"n": 1}) == "n: 1 is not valid under any of the given schemas"
    dated = checker(spec({"type": "object", "properties": {"d": {"type": "string", "pattern": "^2024-"}}}))
    assert dated({"d": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}) is None  # a BSON date is checked as its text
    assert dated({"d": dt.datetime(2023, 1, 1, tzinfo=dt.UTC)}) == ("d: '2023-01-01 00:00:00+00:00' "
                                                                   "does not match '^2024-'")
    assert checker(spec({}))({"anything": 1}) is None
