"""The schema directory loads, and client-side validation follows each collection's JSON Schema."""

from __future__ import annotations

import datetime as dt

import pytest

from dbcli.config.load import load_config
from dbcli.errors import InvalidInputError
from dbcli.schema.files import collection_specs, migrations


def test_migrations_are_ordered_and_checksummed() -> None:
    found = migrations(load_config())
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert all(len(m.checksum) == 64 for m in found)


def test_collection_specs_validate_documents() -> None:
    specs = collection_specs(load_config())
    assert {"user_activities", "user_stats", "activity_buckets"} <= set(specs)
    stats = specs["user_stats"]
    stats.validate({"user_id": 1, "activity_count": 3, "last_activity": dt.datetime.now(dt.UTC)})
    with pytest.raises(InvalidInputError, match="violates the user_stats schema"):
        stats.validate({"user_id": 1})


def test_schema_db_has_tables(schema_db: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"users", "orders", "order_items", "products", "order_totals"} <= tables
