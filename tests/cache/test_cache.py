"""The report result cache: disk and Redis backends, invalidation by dbcli writes, TTL, outages."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import KNOWN_SQL, invoke, write_config

REPORT = ["report", "run", "best-sellers", "-P", "limit=2", "-f", "jsonl"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_cache(config: Path, **cache: Any) -> None:
    data = yaml.safe_load(config.read_text())
    data["cache"] = cache
    write_config(config, data)


@pytest.fixture
def known_db(schema_config_file: Path, pg_server: Any, schema_db: str, tmp_path: Path) -> Path:
    """./dbcli.yaml on the known data set, with an on-disk cache in the test's directory."""
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        conn.execute(KNOWN_SQL)
    set_cache(schema_config_file, dir=str(tmp_path / "cache"))
    return schema_config_file


def sql(pg_server: Any, db: str, query: str) -> None:
    import psycopg

    with psycopg.connect(pg_server.conninfo(db)) as conn:
        conn.execute(query.encode())


def laptop(stdout: str) -> dict[str, Any]:
    """The Laptop's row (product 2) in best-sellers JSONL output."""
    import json

    rows = [json.loads(line, parse_float=Decimal) for line in stdout.splitlines()]
    return next(r for r in rows if r["product_id"] == 2)


# ---- encoding ----------------------------------------------------------------------------------

def test_encoding_round_trips_every_report_type() -> None:
    from bson import ObjectId
    from bson.decimal128 import Decimal128

    from dbcli.cache import codec

    value = {"rows": [[1, 2**70, 1.5, Decimal("0.10"), "x", None, True, dt.date(2024, 3, 1),
                       dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC), dt.time(10, 30), dt.timedelta(days=2, seconds=3),
                       uuid.UUID(int=5), b"\x00\xff", {"$t": "not a tag"}, [1, [2]],
                       ObjectId("65f000000000000000000000"), Decimal128("1.5"), float("nan") if False else 0.0]]}
    assert codec.decode(codec.encode(value)) == value
    big = {"rows": [["x" * 100] for _ in range(1000)]}
    blob = codec.encode(big)
    assert blob[:1] == b"z" and len(blob) < 10_000 and codec.decode(blob) == big


# ---- disk backend ---------------------------------------------------------------------------------

def test_disk_cache_hit_then_stats_then_clear(known_db: Path) -> None:
    first = invoke([*REPORT, "--cache"])
    assert first.exit_code == 0, first.stderr
    assert first.stderr == ""
    second = invoke([*REPORT, "--cache"])
    assert second.exit_code == 0
    assert second.stdout == first.stdout
    assert second.stderr.startswith("from the cache (computed ")
    stats = invoke(["cache", "stats", "-f", "json"])
    assert stats.exit_code == 0
    got = stats.json()
    assert (got["backend"], got["entries"], got["hits"], got["misses"], got["hit_ratio"]) == ("disk", 1, 1, 1, 0.5)
    assert got["size_bytes"] > 0 and got["location"] == str(known_db.parent / "cache")
    cleared = invoke(["cache", "clear"])
    assert (cleared.exit_code, cleared.stdout, cleared.stderr) == (0, "", "removed 1 cached result\n")
    assert invoke(["cache", "stats", "-f", "json"]).json()["entries"] == 0
    assert invoke(["cache", "clear", "-q"]).stderr == ""


def test_cache_is_off_by_default_and_on_with_cache_ttl(known_db: Path, pg_server: Any, schema_db: str) -> None:
    invoke(REPORT)
    sql(pg_server, schema_db, "UPDATE order_items SET unit_price = 800 WHERE order_id = 1 AND product_id = 2")
    assert laptop(invoke(REPORT).stdout)["revenue"] == Decimal("800.00")
    set_cache(known_db, dir=str(known_db.parent / "cache"), ttl=60)
    assert invoke(REPORT).stderr == ""  # stored
    assert invoke(REPORT).stderr.startswith("from the cache")
    assert invoke([*REPORT, "--no-cache"]).stderr == ""


def test_cached_report_reflects_a_table_update_made_a_moment_before(known_db: Path, pg_server: Any,
                                                                     schema_db: str) -> None:
    before = invoke([*REPORT, "--cache"])
    assert laptop(before.stdout)["revenue"] == Decimal("900.00")
    # a write behind dbcli's back is not seen while the entry lives: the cache really serves...
    sql(pg_server, schema_db, "UPDATE order_items SET unit_price = 990 WHERE order_id = 1 AND product_id = 2")
    stale = invoke([*REPORT, "--cache"])
    assert stale.stdout == before.stdout and stale.stderr.startswith("from the cache")
    # ...but a write through dbcli invalidates every report reading that table at once
    update = invoke(["table", "update", "order_items", "--where", "order_id=1", "--where", "product_id=2",
                     "--set", "quantity=2", "-q"])
    assert update.exit_code == 0, update.stderr
    after = invoke([*REPORT, "--cache"])
    assert after.stderr == ""
    assert laptop(after.stdout) == {"product_id": 2, "sku": "EL-1", "product_name": "Laptop", "units_sold": 2,
                                    "revenue": Decimal("1980.00")}
    assert invoke([*REPORT, "--cache"]).stderr.startswith("from the cache")


def test_note_write_invalidates_only_reports_reading_that_source(known_db: Path, load_cfg: Callable[..., Any],
                                                                 pg_server: Any, schema_db: str) -> None:
    from dbcli.cache import store as cache
    from dbcli.cache.versions import open_backend

    cfg = load_cfg()
    users = ["report", "run", "customers-without-orders", "-f", "json", "--cache"]
    invoke([*REPORT, "--cache"])
    invoke([*users])
    assert cache.note_write(cfg, ["postgres:public.payments"]) is True  # read by neither report
    assert invoke([*REPORT, "--cache"]).stderr.startswith("from the cache")
    assert invoke(users).stderr.startswith("from the cache")
    assert cache.note_write(cfg, ["postgres:users"]) is True
    assert invoke([*REPORT, "--cache"]).stderr.startswith("from the cache")
    assert invoke(users).stderr == ""
    backend = open_backend(cfg)
    assert backend.versions(["postgres:users", "postgres:payments", "postgres:orders"]) == {
        "postgres:users": 1, "postgres:payments": 1, "postgres:orders": 0}
    backend.close()


def test_ttl_expires_entries(known_db: Path) -> None:
    invoke([*REPORT, "--cache", "--ttl", "1"])
    assert invoke([*REPORT, "--cache", "--ttl", "1"]).stderr.startswith("from the cache")
    time.sleep(1.1)
    assert invoke([*REPORT, "--cache", "--ttl", "1"]).stderr == ""


def test_key_depends_on_parameters_profile_and_database(load_cfg: Callable[..., Any], tmp_path: Path) -> None:
    from dbcli.config.load import load_config
    from dbcli.reports import registry
    from dbcli.reports.cached import cache_parts

    write_config(tmp_path / "a.yaml", {"postgres": {"dsn": "host=h1 dbname=shop"}})
    write_config(tmp_path / "b.yaml", {"postgres": {"dsn": "host=h2 dbname=shop"}})
    a, b = load_config(str(tmp_path / "a.yaml")), load_config(str(tmp_path / "b.yaml"))
    report = registry.get(a, "best-sellers")
    parts = [cache_parts(a, report, {"limit": 1}), cache_parts(a, report, {"limit": 2}),
             cache_parts(b, report, {"limit": 1})]
    assert len({repr(p) for p in parts}) == 3
    assert a.profile == b.profile == "local"


def test_unusable_disk_cache_warns_once_and_runs(known_db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    set_cache(known_db, dir=str(blocker / "cache"))
    result = invoke([*REPORT, "--cache"])
    assert result.exit_code == 0
    assert laptop(result.stdout)["revenue"] == Decimal("900.00")
    assert result.stderr.count("Warning: ") == 1
    assert result.stderr.startswith(f"Warning: disk cache at {blocker / 'cache'} is unusable")


# ---- Redis ---------------------------------------------------------------------------------------

def test_redis_cache_hit_stats_clear(known_db: Path, redis_url: str, redis_server: Any) -> None:
    set_cache(known_db, url=redis_url)
    first = invoke([*REPORT, "--cache"])
    assert first.exit_code == 0 and first.stderr == ""
    second = invoke([*REPORT, "--cache"])
    assert second.stdout == first.stdout and second.stderr.startswith("from the cache")
    client = redis_server.client()
    try:
        keys = client.keys("dbcli:r:*")
        assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 300
    finally:
        client.close()
    stats = invoke(["cache", "stats", "-f", "json"]).json()
    assert (stats["backend"], stats["entries"], stats["hits"], stats["misses"]) == ("redis", 1, 1, 1)
    table = invoke(["cache", "stats", "-f", "table"])
    assert table.exit_code == 0 and "redis" in table.stdout
    assert invoke(["cache", "clear"]).stderr == "removed 1 cached result\n"
    assert invoke(["cache", "stats", "-f", "json"]).json()["entries"] == 0


def test_redis_cached_report_reflects_a_table_update(known_db: Path, redis_url: str) -> None:
    set_cache(known_db, url=redis_url, ttl=600)
    invoke(REPORT)
    assert invoke(REPORT).stderr.startswith("from the cache")
    assert invoke(["table", "update", "order_items", "--where", "order_id=1", "--where", "product_id=2",
                   "--set", "unit_price=100", "-q"]).exit_code == 0
    after = invoke(REPORT)
    assert after.stderr == ""
    assert laptop(after.stdout)["revenue"] == Decimal("100.00")


def test_redis_on_a_closed_port_warns_once_and_the_report_runs(known_db: Path) -> None:
    set_cache(known_db, url=f"redis://127.0.0.1:{closed_port()}/0", ttl=60)
    start = time.monotonic()
    result = invoke(REPORT)
    assert result.exit_code == 0
    assert laptop(result.stdout)["revenue"] == Decimal("900.00")
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Warning: redis at redis://127.0.0.1:")
    assert result.stderr.endswith("running the report uncached\n")
    assert time.monotonic() - start < 5
    stats = invoke(["cache", "stats"])
    assert stats.exit_code == 4
    assert stats.stderr.startswith("Error: redis at redis://127.0.0.1:")


def test_redis_stopped_mid_life(known_db: Path, start_redis: Callable[[], Any], load_cfg: Callable[..., Any],
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dbcli.cache import store as cache
    from dbcli.cache.versions import pending_file

    server = start_redis()
    set_cache(known_db, url=server.url, ttl=600)
    invoke(REPORT)
    assert invoke(REPORT).stderr.startswith("from the cache")
    server.stop()
    result = invoke(REPORT)
    assert result.exit_code == 0
    assert laptop(result.stdout)["revenue"] == Decimal("900.00")
    assert result.stderr.count("Warning: ") == 1
    # a write while Redis is down: the caller's write goes on, one warning, the bump is kept locally
    monkeypatch.setattr(cache, "_warned", False)
    cfg = load_cfg()
    assert cache.note_write(cfg, ["postgres:orders"]) is False
    assert cache.note_write(cfg, ["postgres:users"]) is False
    err = capsys.readouterr().err
    assert err.count("Warning: ") == 1 and "refreshed when it is back" in err
    assert pending_file(cfg).read_text().split() == ["postgres:orders", "postgres:users"]


def test_pending_bumps_are_replayed_when_redis_answers(known_db: Path, redis_url: str,
                                                       load_cfg: Callable[..., Any]) -> None:
    from dbcli.cache import store as cache
    from dbcli.cache.versions import open_backend, pending_file, remember_pending

    set_cache(known_db, url=redis_url)
    cfg = load_cfg()
    remember_pending(cfg, ["postgres:orders", "mongo:user_stats"])
    backend = open_backend(cfg)
    try:
        assert backend.versions(["postgres:orders", "mongo:user_stats"]) == {"postgres:orders": 1,
                                                                             "mongo:user_stats": 1}
    finally:
        backend.close()
    assert not pending_file(cfg).exists()
    assert cache.note_write(cfg, ["postgres:orders"]) is True
    backend = open_backend(cfg)
    assert backend.versions(["postgres:orders"]) == {"postgres:orders": 2}
    backend.close()
