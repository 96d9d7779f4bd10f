"""Collections and indexes from schemas/mongo are created idempotently on a real server."""

from __future__ import annotations

from typing import Any

from dbcli.config.load import load_config
from dbcli.mongo.validation import apply, plan, status
from dbcli.schema.files import collection_specs


def test_apply_creates_collections_and_indexes_once(mongo_server: Any, mongo_db: str) -> None:
    specs = collection_specs(load_config())
    client = mongo_server.client()
    db = client[mongo_db]
    try:
        changes, _ = apply(db, specs)
        assert {c.collection for c in changes if c.action == "create collection"} == set(specs)
        names = {ix["name"] for ix in db["user_activities"].list_indexes()}
        assert "event_id_unique" in names or any("event_id" in n for n in names)
        assert all(r["state"] == "present" for r in status(db, specs))
        again = [c for c in plan(db, specs) if c.action != "set validator"]
        assert again == []
        changes, _ = apply(db, specs)
        assert [c for c in changes if c.action != "set validator"] == []
    finally:
        client.close()
