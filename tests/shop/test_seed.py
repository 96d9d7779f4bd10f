"""seed: deterministic, constraint-respecting sample data in PostgreSQL (COPY) and MongoDB (bulk inserts)."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbcli.config.load import load_config
from dbcli.output import Output
from dbcli.shop.demo import seed as demo_seed
from dbcli.shop.seed import catalog, users
from dbcli.shop.seed import load as seeding
from dbcli.shop.seed.rows import PG_TABLES
from tests.fix_pg import PgServer
from tests.helpers import invoke, run_entry, write_config

SMALL = ["--users", "40", "--products", "15", "--orders", "120"]
ORDER_BY = {"users": "user_id", "user_profiles": "user_id", "addresses": "address_id",
            "categories": "category_id", "products": "product_id", "product_categories": "product_id, category_id",
            "orders": "order_id", "order_items": "order_id, product_id", "payments": "payment_id"}


@pytest.fixture
def second_schema_db(pg_server: PgServer, schema_template: str) -> Iterator[str]:
    name = pg_server.create_database(template=schema_template)
    yield name
    pg_server.drop_database(name)


def dump(dsn: str) -> dict[str, bytes]:
    """Every seeded table as COPY text, in key order."""
    out: dict[str, bytes] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, order in ORDER_BY.items():
            buf = bytearray()
            with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT") as copy:  # type: ignore[arg-type]
                for block in copy:
                    buf += block
            out[table] = bytes(buf)
    return out


def docs(client: Any, db: str) -> dict[str, list[dict[str, Any]]]:
    keys = {"user_activities": [("event_id", 1)], "user_stats": [("user_id", 1)],
            "activity_buckets": [("user_id", 1), ("hour", 1), ("seq", 1)]}
    return {name: list(client[db][name].find({}, {"_id": 0}).sort(key)) for name, key in keys.items()}


def one(dsn: str, query: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]  # type: ignore[index]


# ---- determinism -------------------------------------------------------------------------------

def test_same_seed_twice_gives_identical_data(tmp_path: Path, pg_server: PgServer, schema_db: str,
                                              second_schema_db: str, mongo_server: Any) -> None:
    mongo_dbs = ["t_seed_a_" + schema_db[-6:], "t_seed_b_" + schema_db[-6:]]
    client = mongo_server.client()
    try:
        for pg_name, mongo_name in zip((schema_db, second_schema_db), mongo_dbs, strict=True):
            write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(pg_name)},
                                                   "mongo": {"uri": mongo_server.uri, "database": mongo_name}})
            result = invoke(["seed", "--seed", "1", *SMALL, "--events", "300", "--base-date", "2025-01-01", "-q"])
            assert result.exit_code == 0, result.stderr
        first, second = dump(pg_server.conninfo(schema_db)), dump(pg_server.conninfo(second_schema_db))
        assert all(first[t] for t in ORDER_BY)
        assert first == second
        docs_a, docs_b = docs(client, mongo_dbs[0]), docs(client, mongo_dbs[1])
        assert len(docs_a["user_activities"]) == 300
        assert docs_a == docs_b
    finally:
        for name in mongo_dbs:
            client.drop_database(name)
        client.close()


def test_other_seed_gives_other_data(tmp_path: Path, pg_server: PgServer, schema_db: str,
                                     second_schema_db: str) -> None:
    for name, seed in ((schema_db, "1"), (second_schema_db, "2")):
        write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(name)}})
        assert invoke(["seed", "--seed", seed, *SMALL, "-q"]).exit_code == 0
    assert dump(pg_server.conninfo(schema_db))["users"] != dump(pg_server.conninfo(second_schema_db))["users"]


# ---- content -----------------------------------------------------------------------------------

def test_seed_respects_the_domain(schema_config_file: Path, pg_server: PgServer, schema_db: str) -> None:
    result = invoke(["seed", *SMALL, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    counts = {r["name"]: r["rows"] for r in result.json()}
    assert set(counts) == set(PG_TABLES)
    assert (counts["users"], counts["products"], counts["orders"]) == (40, 15, 120)
    assert result.stderr.startswith("seeded ")
    dsn = pg_server.conninfo(schema_db)
    for table, n in counts.items():
        assert one(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == n
    assert 0 < counts["user_profiles"] < 40  # the 1:1 profile is optional
    assert counts["addresses"] >= 40 and counts["order_items"] >= 120
    assert one(dsn, "SELECT count(*) FROM categories WHERE parent_id IS NULL") == 7
    assert one(dsn, "SELECT max(depth) FROM (WITH RECURSIVE t AS (SELECT category_id, 1 AS depth FROM categories "
                    "WHERE parent_id IS NULL UNION ALL SELECT c.category_id, t.depth + 1 FROM categories c "
                    "JOIN t ON c.parent_id = t.category_id) SELECT depth FROM t) d") == 3
    # unit_price captured from the product price; a completed payment pays the order total
    assert one(dsn, "SELECT count(*) FROM order_items oi JOIN products p USING (product_id) "
                    "WHERE oi.unit_price <> p.price") == 0
    assert one(dsn, "SELECT count(*) FROM payments p JOIN order_totals t USING (order_id) "
                    "WHERE p.amount <> t.total") == 0
    assert one(dsn, "SELECT count(*) FROM orders o WHERE o.status IN ('paid', 'shipped', 'delivered') AND NOT EXISTS "
                    "(SELECT 1 FROM payments p WHERE p.order_id = o.order_id AND p.status = 'completed')") == 0
    assert one(dsn, "SELECT count(*) FROM orders o JOIN users u USING (user_id) WHERE o.order_date < u.created_at") == 0
    # the base date is today by default (UTC midnight): nothing lies after it
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert str(one(dsn, "SELECT max(greatest(o.order_date, p.created_at)) FROM orders o "
                        "JOIN payments p USING (order_id)")) < today
    assert one(dsn, "SELECT count(*) FROM customer_order_summary") == 40
    # identity sequences continue after the seeded ids
    with psycopg.connect(dsn) as conn:
        new_id = conn.execute("INSERT INTO users (email, name) VALUES ('new@example.com', 'New') "
                              "RETURNING user_id").fetchone()
        assert new_id == (41,)


def test_tutorial_query_runs_on_seeded_data(schema_config_file: Path, pg_server: PgServer, schema_db: str) -> None:
    assert invoke(["seed", *SMALL, "-q"]).exit_code == 0
    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        user_id = conn.execute("SELECT user_id FROM orders LIMIT 1").fetchone()[0]  # type: ignore[index]
        rows = conn.execute("SELECT o.order_id, o.order_date, p.product_name, oi.quantity FROM orders o JOIN "
                            "order_items oi ON o.order_id = oi.order_id JOIN products p ON oi.product_id = "
                            "p.product_id WHERE o.user_id = %s", (user_id,)).fetchall()
    assert rows and all(r[3] > 0 for r in rows)


def test_activity_documents_are_consistent(tmp_path: Path, pg_server: PgServer, schema_db: str,
                                           mongo_server: Any, mongo_db: str) -> None:
    # two users and many events so that hours fill up and buckets split at the configured size
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(schema_db)},
                                           "mongo": {"uri": mongo_server.uri, "database": mongo_db},
                                           "activity": {"bucket_size": 3}})
    assert invoke(["schema", "apply", "--target", "mongo", "-q"]).exit_code == 0
    result = invoke(["seed", "--users", "2", "--products", "3", "--orders", "0", "--events", "3000", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    counts = {r["name"]: r["rows"] for r in result.json()}
    client = mongo_server.client()
    try:
        got = docs(client, mongo_db)
    finally:
        client.close()
    events, stats, buckets = got["user_activities"], got["user_stats"], got["activity_buckets"]
    assert (counts["user_activities"], counts["user_stats"], counts["activity_buckets"]) == (
        3000, len(stats), len(buckets))
    specs = {name: spec for name, spec in seeding_specs().items()}
    for name, documents in got.items():
        for doc in documents:
            specs[name].validate(doc)
    ev = events[0]
    assert set(ev) == {"event_id", "user_id", "type", "timestamp", "day", "hour", "data", "user"}
    assert ev["hour"] == ev["timestamp"].strftime("%Y-%m-%dT%H") and ev["day"] == ev["hour"][:10]
    # user_stats: the incremental rules applied to all events at once
    for st in stats:
        mine = [e for e in events if e["user_id"] == st["user_id"]]
        assert st["activity_count"] == len(mine)
        assert st["first_activity"] == min(e["timestamp"] for e in mine)
        assert st["last_activity"] == max(e["timestamp"] for e in mine)
        assert st["counts"] == dict(Counter(e["type"] for e in mine))
        assert st["user"] == mine[0]["user"]
    # buckets: <= bucket_size events per (user, hour, seq), seq 0.. without gaps, each event exactly once
    by_key: dict[tuple[int, str], list[int]] = {}
    for b in buckets:
        assert 1 <= b["count"] == len(b["events"]) <= 3
        assert all(e["ts"].strftime("%Y-%m-%dT%H") == b["hour"] for e in b["events"])
        by_key.setdefault((b["user_id"], b["hour"]), []).append(b["seq"])
    assert all(seqs == list(range(len(seqs))) for seqs in by_key.values())
    assert max(len(s) for s in by_key.values()) > 1  # some hours did split
    assert sorted(e["event_id"] for b in buckets for e in b["events"]) == sorted(e["event_id"] for e in events)


def seeding_specs() -> dict[str, Any]:
    from dbcli.schema.files import collection_specs

    return collection_specs(load_config())


def test_seed_encrypts_configured_columns_and_fields(tmp_path: Path, pg_server: PgServer, schema_db: str,
                                                     mongo_server: Any, mongo_db: str) -> None:
    from dbcli.encryption.fields import generate_key, is_token

    settings = {"postgres": {"dsn": pg_server.conninfo(schema_db)},
                "mongo": {"uri": mongo_server.uri, "database": mongo_db},
                "encryption": {"key": "", "columns": {"user_profiles": ["phone"]},
                               "fields": {"user_activities": ["user.name"]}}}
    write_config(tmp_path / "dbcli.yaml", settings)
    assert invoke(["schema", "apply", "--target", "mongo", "-q"]).exit_code == 0
    refused = invoke(["seed", *SMALL, "--events", "20"])  # no key: refused like any other write
    assert refused.exit_code == 3
    assert refused.stderr.startswith("Error: column user_profiles.phone is encrypted but encryption.key is not set")
    assert one(pg_server.conninfo(schema_db), "SELECT count(*) FROM users") == 0
    settings["encryption"]["key"] = generate_key()
    write_config(tmp_path / "dbcli.yaml", settings)
    result = invoke(["seed", *SMALL, "--events", "20", "-q"])
    assert result.exit_code == 0, result.stderr
    stored = one(pg_server.conninfo(schema_db), "SELECT phone FROM user_profiles ORDER BY user_id LIMIT 1")
    assert is_token(stored)
    client = mongo_server.client()
    try:
        doc = client[mongo_db]["user_activities"].find_one()
    finally:
        client.close()
    assert is_token(doc["user"]["name"]) and not is_token(doc["user"]["tier"])
    shown = invoke(["table", "find", "user_profiles", "--limit", "1", "--order-by", "user_id", "-f", "json"])
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()[0]["phone"].startswith("+1 555 ")


# ---- refusals and options ----------------------------------------------------------------------

def test_seed_refuses_a_database_with_data(schema_config_file: Path) -> None:
    assert invoke(["seed", *SMALL, "-q"]).exit_code == 0
    again = invoke(["seed", *SMALL])
    assert again.exit_code == 7
    assert again.stderr == ("Error: table users already holds rows: seed fills an empty schema only "
                            "(hint: seed a fresh database, or run dbcli seed --reset to empty them first)\n")


def test_seed_refuses_collections_with_documents(schema_full_config_file: Path, mongo_server: Any,
                                                 mongo_db: str, pg_server: PgServer, schema_db: str) -> None:
    client = mongo_server.client()
    try:
        client[mongo_db]["user_stats"].insert_one({"user_id": 1, "activity_count": 1})
    finally:
        client.close()
    result = invoke(["seed", *SMALL, "--events", "10"])
    assert result.exit_code == 7
    assert "collection user_stats already holds documents" in result.stderr
    assert one(pg_server.conninfo(schema_db), "SELECT count(*) FROM users") == 0  # nothing written


def test_mongo_failure_rolls_back_postgres(schema_full_config_file: Path, mongo_server: Any, mongo_db: str,
                                           pg_server: PgServer, schema_db: str) -> None:
    client = mongo_server.client()
    try:  # an index the seeded events must violate: two events of the same type
        client[mongo_db]["user_activities"].create_index("type", unique=True)
    finally:
        client.close()
    result = invoke(["seed", *SMALL, "--events", "50"])
    assert result.exit_code == 7
    assert result.stderr.startswith("Error: duplicate key in user_activities: ")
    assert result.stderr.endswith("(hint: the PostgreSQL rows were rolled back; documents already inserted stay in "
                                  "MongoDB: empty its collections before seeding again)\n")
    assert one(pg_server.conninfo(schema_db), "SELECT count(*) FROM users") == 0


def test_seed_without_schema_exits_5(config_file: Path) -> None:
    result = invoke(["seed", *SMALL])
    assert result.exit_code == 5
    assert result.stderr == ("Error: table users does not exist: the schema is not applied "
                             "(hint: run dbcli schema apply first)\n")


def test_events_without_mongo_exits_3(schema_config_file: Path) -> None:
    result = invoke(["seed", *SMALL, "--events", "10"])
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: activity events need a MongoDB, and none is configured")


@pytest.mark.parametrize(("args", "message"), [
    (["--orders", "5", "--users", "0"], "orders need at least one user and one product"),
    (["--users", "-1"], "--users must be 0 or more, got -1"),
    (["--base-date", "yesterday"], "--base-date must look like 2025-01-01, got 'yesterday'"),
])
def test_bad_sizes_are_usage_errors(schema_config_file: Path, args: list[str], message: str) -> None:
    result = invoke(["seed", *args])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


def test_base_date_moves_every_timestamp(schema_config_file: Path, pg_server: PgServer, schema_db: str) -> None:
    assert invoke(["seed", *SMALL, "--base-date", "2030-06-01", "-q"]).exit_code == 0
    latest = one(pg_server.conninfo(schema_db), "SELECT max(order_date) FROM orders")
    assert "2030-04" <= str(latest) < "2030-06-01"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "table"])
def test_summary_formats(schema_config_file: Path, fmt: str) -> None:
    result = invoke(["seed", "--users", "3", "--products", "2", "--orders", "4", "-f", fmt])
    assert result.exit_code == 0, result.stderr
    if fmt == "csv":
        assert result.stdout.splitlines()[:2] == ["target,name,rows", "postgres,users,3"]
    elif fmt == "jsonl":
        assert result.stdout.splitlines()[0] == '{"target":"postgres","name":"users","rows":3}'
    else:
        assert "order_items" in result.stdout


def test_quiet_prints_nothing(schema_config_file: Path) -> None:
    result = invoke(["seed", "--users", "3", "--products", "2", "--orders", "4", "--quiet"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_library_progress_callback(schema_config_file: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    counts = seeding.seed(load_config(), users=12, products=5, orders=30, seed=3,
                          progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert counts["orders"] == 30
    assert seen == [("users", 12, 12), ("catalog", 5, 5), ("orders", 30, 30)]


def test_vocabulary_needs_no_copy_escaping() -> None:
    words: list[str] = [*users.FIRST, *users.LAST, *users.STREETS, *users.BIOS, *catalog.ADJECTIVES,
                        *(c[0] for c in users.CITIES)]

    def walk(tree: Any) -> None:
        for name, sub in tree.items():
            words.append(name)
            if isinstance(sub, dict):
                walk(sub)
            else:
                words.extend(sub)

    walk(catalog.CATEGORY_TREE)
    assert not [w for w in words if any(c in w for c in "\t\n\r\\") or not w.isascii()]


# ---- demo --------------------------------------------------------------------------------------

def test_demo_step_applies_and_seeds_once(full_config_file: Path, pg_conninfo: str) -> None:
    cfg = load_config()
    for _ in range(2):
        err = io.StringIO()
        demo_seed.step(cfg, Output(fmt="json", stdout=io.StringIO(), stderr=err))
    assert "sample data already present: not seeding again" in err.getvalue()
    assert "schema: up to date" in err.getvalue()
    assert one(pg_conninfo, "SELECT count(*) FROM orders") == 500


# ---- a first hour that works (issue 15) --------------------------------------------------------

def test_default_base_date_is_today_so_30_day_reports_show_data(schema_config_file: Path, pg_server: PgServer,
                                                                schema_db: str) -> None:
    # issue 15: the seed ended 2025-01-01, so daily-revenue (last 30 days by default) showed zeros
    assert invoke(["seed", *SMALL, "-q"]).exit_code == 0
    today = dt.datetime.now(dt.UTC).date()
    latest = one(pg_server.conninfo(schema_db), "SELECT max(order_date) FROM orders")
    assert (today - dt.timedelta(days=30)).isoformat() <= str(latest) < today.isoformat()
    result = invoke(["report", "run", "daily-revenue", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert any(float(r.get("revenue") or 0) > 0 for r in result.json()), result.json()


def test_users_1_to_n_have_orders(schema_config_file: Path) -> None:
    # issue 15: getting started runs user-orders for user 1, who had no orders
    assert invoke(["seed", "-q"]).exit_code == 0
    for uid in range(1, 11):
        result = invoke(["report", "run", "user-orders", "--param", f"user_id={uid}", "-f", "json"])
        assert result.exit_code == 0, result.stderr
        assert result.json(), uid


def test_small_seed_gives_every_user_an_order(schema_config_file: Path, pg_server: PgServer, schema_db: str) -> None:
    assert invoke(["seed", "--users", "3", "--products", "2", "--orders", "4", "-q"]).exit_code == 0
    assert one(pg_server.conninfo(schema_db), "SELECT count(DISTINCT user_id) FROM orders") == 3


def test_reset_empties_tables_and_collections_then_seeds_the_same_data(
        schema_full_config_file: Path, pg_server: PgServer, schema_db: str, mongo_server: Any, mongo_db: str,
        tmp_path: Path) -> None:
    args = ["seed", *SMALL, "--events", "50", "--base-date", "2025-01-01", "-q"]
    assert invoke(args).exit_code == 0
    dsn = pg_server.conninfo(schema_db)
    first = dump(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO users (email, name) VALUES ('extra@example.com', 'Extra')")
    refused = invoke(args)
    assert refused.exit_code == 7
    assert "run dbcli seed --reset to empty them first" in refused.stderr

    # not a terminal, no --yes: refused, nothing changed (the test runner's stdin is no terminal)
    no = run_entry([*args[:-1], "--reset"], input="y\n")
    assert no.exit_code == 7, no.stderr
    assert "refused without --yes when stdin is not a terminal (hint: add --yes to confirm)" in no.stderr
    assert one(dsn, "SELECT count(*) FROM users") == 41

    again = run_entry([*args[:-1], "--reset", "--yes", "-q"])
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "")
    assert dump(dsn) == first  # identities restart: the same seed and base date give the same rows
    client = mongo_server.client()
    try:
        assert client[mongo_db].user_activities.count_documents({}) == 50
    finally:
        client.close()


def test_reset_asks_on_a_terminal(schema_config_file: Path, pg_server: PgServer, schema_db: str,
                                  tmp_path: Path) -> None:
    import pty

    assert invoke(["seed", "--users", "3", "--products", "2", "--orders", "4", "-q"]).exit_code == 0
    for answer, code in (("n", 7), ("y", 0)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "dbcli", "seed", "--users", "5", "--products", "2",
                                 "--orders", "4", "--reset", "-q"], stdin=follower, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=tmp_path, text=True)
        os.close(follower)
        os.write(leader, f"{answer}\n".encode())
        _, err = proc.communicate(timeout=60)
        os.close(leader)
        assert proc.returncode == code, err
        assert "seed --reset deletes every row of the shop's tables" in err
    assert one(pg_server.conninfo(schema_db), "SELECT count(*) FROM users") == 5
