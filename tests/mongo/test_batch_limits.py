"""Update and delete commands stay under FerretDB 1.x's limit (issue 19): at most 40 statements each.

FerretDB 1.24 keeps one pool connection per update statement until the command ends, and an
update command of 50 (PostgreSQL backend) or 100 (SQLite) statements matching existing documents
hangs the server for good. Every bulk path of dbcli is replayed here against the test server with
a command listener counting the statements of each command it sends.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import InsertOne, UpdateOne, monitoring
from pymongo.errors import BulkWriteError

from tests.helpers import Result

Cli = Callable[..., Result]


class Statements(monitoring.CommandListener):
    """The number of statements of every update/delete command started while registered."""

    def __init__(self) -> None:
        self.sizes: list[tuple[str, int]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in ("update", "delete"):
            self.sizes.append((name, len(event.command.get(name + "s") or [])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def statements() -> Iterator[Statements]:
    # clients created from now on report to it (pymongo has no unregister: it is emptied at the end)
    listener = Statements()
    monitoring.register(listener)
    yield listener
    listener.sizes = []


@pytest.fixture
def limit(mongo_server: Any) -> int:
    from dbcli.mongo.bulk import statement_limit

    client = mongo_server.client()
    try:
        return statement_limit(client)
    finally:
        client.close()


def test_the_limit_follows_what_buildinfo_says(mongo_server: Any, limit: int) -> None:
    from dbcli.mongo.bulk import DEFAULT_STATEMENTS, FERRETDB1_STATEMENTS

    client = mongo_server.client()
    try:
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    ferret1 = str(info.get("ferretdbVersion", "")).lstrip("v").startswith("1.")
    assert limit == (FERRETDB1_STATEMENTS if ferret1 else DEFAULT_STATEMENTS)
    assert FERRETDB1_STATEMENTS <= 40


def test_chunked_bulk_write_reports_errors_at_their_index_in_the_whole(mongo_server: Any, coll_db: Any,
                                                                       statements: Statements) -> None:
    from dbcli.mongo.bulk import bulk_write

    coll_db.kv.insert_many([{"_id": i, "v": 0} for i in range(100)])
    # the third command's updates, and an insert of an _id that exists, at index 85 of the whole
    ops: list[Any] = [UpdateOne({"_id": i}, {"$inc": {"v": 1}}) for i in range(100)]
    ops[85] = InsertOne({"_id": 3})
    client = mongo_server.client()  # created after the listener, so it reports to it
    try:
        with pytest.raises(BulkWriteError) as err:
            bulk_write(client[coll_db.name]["kv"], ops, 40)
    finally:
        client.close()
    assert [(e["index"], e["code"]) for e in err.value.details["writeErrors"]] == [(85, 11000)]
    assert err.value.details["nMatched"] == 99
    assert [n for _, n in statements.sizes] == [40, 40, 19]
    assert coll_db.kv.count_documents({"v": 1}) == 99


def test_upsert_import_matching_existing_documents_finishes(mongo_config: Callable[..., Path], cli: Cli,
                                                            tmp_path: Path, coll_db: Any, statements: Statements,
                                                            limit: int) -> None:
    # issue 19: 1,000 upserts matching existing documents in one command never got an answer
    mongo_config()
    coll_db.kv.create_index("k", unique=True)
    (tmp_path / "kv.jsonl").write_text("".join(json.dumps({"k": i, "v": i}) + "\n" for i in range(250)))
    first = cli("collection", "import", "kv", "kv.jsonl", "--upsert-key", "k", "-f", "json")
    assert first.exit_code == 0, first.stderr
    (tmp_path / "kv.jsonl").write_text("".join(json.dumps({"k": i, "v": -i}) + "\n" for i in range(250)))
    again = cli("collection", "import", "kv", "kv.jsonl", "--upsert-key", "k", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert (again.json()["inserted"], again.json()["updated"], again.json()["unchanged"]) == (0, 249, 1)
    assert coll_db.kv.find_one({"k": 7})["v"] == -7
    updates = [n for name, n in statements.sizes if name == "update"]
    # the first import inserts (insert_many: no update command), the second updates by _id
    assert len(updates) >= -(-250 // limit) and max(updates) <= limit


def test_activity_ingest_of_many_users_stays_under_the_limit(act: Any, tmp_path: Path, statements: Statements,
                                                             limit: int) -> None:
    from tests.fix_activity import BASE, assert_consistent, write_jsonl
    from tests.helpers import invoke

    act.add_users(115, start=6)
    events = [{"user_id": uid, "type": "login", "timestamp": (BASE + dt.timedelta(minutes=m)).isoformat()}
              for m in (0, 70, 71) for uid in range(1, 121)]
    path = write_jsonl(tmp_path / "many.jsonl", events)
    for size in ("120", "360"):  # one batch per minute, then all at once: appends to existing buckets
        r = invoke(["activity", "ingest", str(path), "--batch-size", size, "-f", "json"])
        assert r.exit_code == 0, r.stderr
    assert max(n for _, n in statements.sizes) <= limit
    assert_consistent(act)
