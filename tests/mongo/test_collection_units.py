"""Pure parts of the collection layer: parsing, client-side update evaluation, the fast schema check."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from bson import ObjectId

from dbcli.errors import InvalidInputError
from dbcli.mongo import documents, update_sim
from dbcli.mongo.fastschema import compile_schema
from dbcli.schema.files import collection_specs


def test_parse_update_and_sort() -> None:
    assert documents.parse_update('{"$set": {"a": {"$date": "2024-01-01T00:00:00Z"}}}') == {
        "$set": {"a": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}}
    with pytest.raises(InvalidInputError, match=r"^--update: \$set takes a JSON object of fields$"):
        documents.parse_update('{"$set": 1}')
    with pytest.raises(InvalidInputError, match="expected a JSON object of update operators"):
        documents.parse_update("[]")
    assert documents.parse_sort('{"a": 1, "b": -1}') == [("a", 1), ("b", -1)]
    with pytest.raises(InvalidInputError, match=r"^--sort: direction of 'a' must be 1 or -1$"):
        documents.parse_sort('{"a": true}')
    with pytest.raises(InvalidInputError, match=r"^--filter: invalid JSON"):
        documents.parse_object('{"_id": {"$oid": "nothex"}}', "--filter")


@pytest.mark.parametrize("name", ["", "a$b", "system.x", "x\x00"])
def test_bad_collection_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid collection name"):
        documents.check_name(name)


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


def test_fast_check_never_accepts_what_jsonschema_rejects() -> None:
    """The compiled check may be stricter than jsonschema, never looser (jsonschema decides then)."""
    specs = collection_specs(_cfg())
    rng = random.Random(7)
    for name, template in TEMPLATES.items():
        spec = specs[name]
        quick = compile_schema(spec.json_schema)
        assert quick is not None, f"{name} uses keywords outside the fast subset"
        assert quick(template) is True and spec.problem(template) is None
        accepted = rejected = 0
        for _ in range(1500):
            doc = _mutate(rng, template)
            if quick(doc):
                assert spec.problem(doc) is None, (name, doc)
                accepted += 1
            elif spec.problem(doc) is not None:
                rejected += 1
        assert accepted > 100 and rejected > 100  # both sides of the line were exercised


def _cfg() -> Any:
    from dbcli.config.load import load_config

    return load_config()


def test_fast_check_refuses_unsupported_keywords() -> None:
    assert compile_schema({"type": "object", "oneOf": [{}]}) is None
    assert compile_schema({"items": [{}]}) is None
    check = compile_schema({"type": "object", "properties": {"d": {"type": "string"}}})
    assert check is not None
    assert check({"d": dt.datetime.now()}) is False  # a BSON date: let jsonschema decide
    assert check({"d": "x"}) is True and check({"d": 1}) is False
