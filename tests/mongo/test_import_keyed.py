"""collection import --upsert-key: one indexed read per batch, inserts of new keys, updates by _id (issue 19).

FerretDB 2.7 + DocumentDB plans an update filtered on a uniquely indexed field, on a table not yet
analyzed, as a walk of the whole primary key: upserts by key into a collection of 100,000 ran at
320 documents/s against 5,700/s into an empty one. These tests replay the import against the test
server with a command listener, and check that the keyed path keeps the semantics of the upserts:
new, existing and mixed keys, a key repeated in one file, no unique index, and a concurrent writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from tests.helpers import Result

Cli = Callable[..., Result]


class Commands(monitoring.CommandListener):
    """The update statements and insert counts sent while registered; ``on_find`` runs after a find."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.inserted = 0
        self.on_find: Callable[[], None] | None = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            self.updates += list(event.command.get("updates") or [])
        elif event.command_name == "insert":
            self.inserted += len(event.command.get("documents") or [])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "find" and self.on_find is not None:
            hook, self.on_find = self.on_find, None  # once
            hook()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def commands() -> Iterator[Commands]:
    listener = Commands()
    monitoring.register(listener)  # clients created from now on report to it
    yield listener
    listener.updates, listener.on_find = [], None


@pytest.fixture
def cfg_file(mongo_config: Callable[..., Path]) -> Path:
    return mongo_config()


def _jsonl(docs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def _import(cli: Cli, path: Path, docs: list[dict[str, Any]], *args: str) -> dict[str, Any]:
    path.write_text(_jsonl(docs))
    res = cli("collection", "import", "items", str(path), "--upsert-key", "sku", "-f", "json", *args)
    assert res.exit_code == 0, res.stderr
    return dict(res.json())


@pytest.mark.parametrize("unique", [True, False], ids=["unique-index", "no-index"])
def test_new_existing_and_mixed_keys(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any, commands: Commands,
                                     unique: bool) -> None:
    if unique:
        coll_db.items.create_index("sku", unique=True)
    ids = coll_db.items.insert_many([{"sku": f"s{i}", "qty": i, "keep": True} for i in range(4)]).inserted_ids
    given = ObjectId()
    report = _import(cli, tmp_path / "a.jsonl",
                     [{"qty": 0, "sku": "s0"}, {"sku": "s1", "qty": 10}, {"sku": "s2", "qty": 20, "new": 1},
                      {"qty": 5, "sku": "n1"}, {"sku": "n2", "_id": {"$oid": str(given)}, "qty": 6},
                      {"sku": "n3", "qty": 7}])
    assert {k: report[k] for k in ("read", "inserted", "updated", "unchanged", "duplicates")} == \
        {"read": 6, "inserted": 3, "updated": 2, "unchanged": 1, "duplicates": 0}
    docs = {d["sku"]: d for d in coll_db.items.find()}
    assert len(docs) == 7 and coll_db.items.count_documents({}) == 7
    # existing documents keep their _id and the fields the file does not name ($set, not replace)
    assert [docs[f"s{i}"]["_id"] for i in range(4)] == ids
    assert docs["s2"] == {"_id": ids[2], "sku": "s2", "qty": 20, "keep": True, "new": 1}
    # a new document is what the upsert inserted: _id (the file's, if any) first, then the key
    assert list(docs["n1"]) == ["_id", "sku", "qty"] and docs["n2"]["_id"] == given
    # one read, the new keys inserted, the existing ones updated by _id: no update filtered on the key
    assert commands.inserted == 3
    assert [(sorted(u["q"]), u.get("upsert", False)) for u in commands.updates] == [(["_id"], False)] * 3
    # all known now: the same file again changes nothing
    again = _import(cli, tmp_path / "a.jsonl",
                    [{"qty": 0, "sku": "s0"}, {"sku": "n1", "qty": 5}])
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)


def test_key_repeated_in_one_file_and_across_batches(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    coll_db.items.create_index("sku", unique=True)
    lines = [{"sku": f"k{i % 4}", "v": i} for i in range(11)]
    report = _import(cli, tmp_path / "r.jsonl", lines, "--batch-size", "3")
    assert (report["read"], report["inserted"], report["updated"], report["unchanged"]) == (11, 4, 7, 0)
    assert sorted((d["sku"], d["v"]) for d in coll_db.items.find()) == [("k0", 8), ("k1", 9), ("k2", 10), ("k3", 7)]


def test_id_taken_by_another_key_is_a_duplicate(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any) -> None:
    coll_db.items.create_index("sku", unique=True)
    coll_db.items.insert_one({"_id": 1, "sku": "a"})
    report = _import(cli, tmp_path / "d.jsonl", [{"_id": 1, "sku": "b"}, {"sku": "c"}])
    assert (report["inserted"], report["duplicates"], report["rejected"]) == (1, 1, 0)
    assert sorted(d["sku"] for d in coll_db.items.find()) == ["a", "c"]


def test_keys_the_read_cannot_map_go_to_keyed_upserts(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any,
                                                      commands: Commands) -> None:
    # an existing array holding the key matches it (server semantics); a subdocument key is compared
    # by the server; numbers compare across int and double; true is not 1
    coll_db.items.insert_many([{"sku": ["a", "b"], "v": 0}, {"sku": {"x": 1}, "v": 0}, {"sku": 2, "v": 0},
                               {"sku": True, "v": 0}])
    # whether an upsert by "a" matches the array: MongoDB and FerretDB 2.7 yes, FerretDB 1.24 no (its
    # find does): the import gives what the upsert gives
    coll_db.probe.insert_one({"sku": ["a", "b"]})
    in_array = coll_db.probe.update_one({"sku": "a"}, {"$set": {"v": 1}}, upsert=True).matched_count == 1
    commands.updates = []
    report = _import(cli, tmp_path / "m.jsonl", [{"sku": "a", "v": 1}, {"sku": {"x": 1}, "v": 1},
                                                 {"sku": 2.0, "v": 1}, {"sku": 1, "v": 1}])
    assert (report["inserted"], report["updated"]) == ((1, 3) if in_array else (2, 2))
    # ($set of the key replaces the matched array with "a", as the upsert does)
    expected = ['"a"=1', '1=1', '2.0=1', 'true=0', '{"x": 1}=1'] if in_array else \
        ['"a"=1', '1=1', '2.0=1', '["a", "b"]=0', 'true=0', '{"x": 1}=1']
    assert sorted(json.dumps(d["sku"]) + f"={d['v']}" for d in coll_db.items.find({}, {"_id": 0})) == expected
    assert sum(1 for u in commands.updates if u.get("upsert")) == (2 if in_array else 1)  # "a", {"x": 1}


def test_concurrent_writer_creates_no_duplicate(cfg_file: Path, cli: Cli, tmp_path: Path, coll_db: Any,
                                                commands: Commands, mongo_server: Any) -> None:
    # between the batch's read and its writes, another writer inserts a key the read did not see and
    # deletes a document it did: the unique index refuses the insert, which is redone as an upsert,
    # and the update that matched nothing is redone as one too
    coll_db.items.create_index("sku", unique=True)
    coll_db.items.insert_many([{"sku": "old", "v": 0}, {"sku": "gone", "v": 0}])
    other: Any = MongoClient(mongo_server.uri)

    def race() -> None:
        theirs = other[coll_db.name].items
        theirs.insert_one({"sku": "new", "v": "theirs", "mine": False})
        theirs.delete_one({"sku": "gone"})

    commands.on_find = race
    try:
        report = _import(cli, tmp_path / "c.jsonl", [{"sku": "old", "v": 1}, {"sku": "gone", "v": 1},
                                                     {"sku": "new", "v": 1}])
    finally:
        other.close()
    assert commands.on_find is None  # the race ran
    assert sorted((d["sku"], d["v"]) for d in coll_db.items.find()) == [("gone", 1), ("new", 1), ("old", 1)]
    assert coll_db.items.find_one({"sku": "new"})["mine"] is False
    assert (report["inserted"], report["updated"], report["duplicates"], report["rejected"]) == (1, 2, 0, 0)
