"""The MongoDB settings that depend on the deployment (issue 18 item 5): write concern, read concern,
read preference, retryable writes and transactions.

The first part runs everywhere (FerretDB included): the settings are checked at load and reach the
driver. The second part needs a replica set or a ``mongos``: it runs when ``DBCLI_TEST_MONGO_URI``
names one, and is skipped with the reason otherwise (in CI too: no MongoDB binary runs there).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dbcli.mongo.topology import REPLICA_SET, SHARDED, STANDALONE, Topology, from_hello
from tests.helpers import invoke, write_config


def _config(tmp_path: Path, mongo_server: Any, mongo_db: str, **settings: Any) -> Path:
    return write_config(tmp_path / "dbcli.yaml", {"data_dir": str(tmp_path / "d"), "mongo": {
        "uri": mongo_server.uri, "database": mongo_db, "connect_timeout": 5, **settings}})


def _client(path: Path) -> Any:
    from dbcli.config.load import load_config
    from dbcli.mongo.connection import client

    return client(load_config(str(path)))


# ---- everywhere: checked at load, passed to the driver ----------------------------------------

@pytest.mark.parametrize(("settings", "message"), [
    ({"write_concern": -1}, "mongo.write_concern: must be 'majority' or a number of members (0 or more), got -1"),
    ({"write_concern": "majorty"}, "mongo.write_concern: must be 'majority' or a number of members (0 or more), "
                                   "got 'majorty' (hint: a custom write concern (a replica set tag set) goes "
                                   "into mongo.uri as w=<name>)"),
    ({"write_concern": "Majority"}, "mongo.write_concern: must be 'majority' or a number of members (0 or more), "
                                    "got 'Majority' (hint: did you mean 'majority'?)"),
    ({"write_concern": True}, "mongo.write_concern: must be a string or an integer, got True"),
    ({"read_preference": "secondary_preferred"},
     "mongo.read_preference: must be one of primary, primaryPreferred, secondary, secondaryPreferred, nearest, "
     "got 'secondary_preferred' (hint: did you mean 'secondaryPreferred'?)"),
    ({"read_concern": "strong"}, "mongo.read_concern: must be one of local, available, majority, linearizable, "
                                 "snapshot, got 'strong'"),
    ({"transactions": "always"}, "mongo.transactions: must be one of auto, off, got 'always'"),
    ({"retry_writes": "maybe"}, "mongo.retry_writes: must be true or false, got 'maybe'"),
])
def test_a_bad_setting_exits_3_at_load(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    cfg = write_config(tmp_path / "dbcli.yaml", {"mongo": {"uri": "mongodb://127.0.0.1:1/", **settings}})
    res = invoke(["-c", str(cfg), "config", "show"])  # touches no server
    assert res.exit_code == 3
    assert res.stderr == f"Error: {message}\n"


def test_the_defaults_are_the_drivers(tmp_path: Path, mongo_server: Any, mongo_db: str) -> None:
    mc = _client(_config(tmp_path, mongo_server, mongo_db))
    try:
        assert mc.write_concern.document == {} and mc.read_concern.level is None
        assert mc.read_preference.mode == 0  # primary
        assert mc.options.retry_writes is True and mc.options.retry_reads is True
    finally:
        mc.close()


def test_the_settings_reach_the_driver_and_the_server_takes_them(tmp_path: Path, mongo_server: Any,
                                                                  mongo_db: str) -> None:
    path = _config(tmp_path, mongo_server, mongo_db, write_concern="1", read_concern="local",
                   read_preference="primaryPreferred", retry_writes=False, retry_reads=False)
    mc = _client(path)
    try:
        assert mc.write_concern.document == {"w": 1}  # "1" in YAML is the number of members
        assert mc.read_concern.level == "local"
        assert mc.read_preference.mongos_mode == "primaryPreferred"
        assert mc.options.retry_writes is False and mc.options.retry_reads is False
    finally:
        mc.close()
    # every command of the profile sends them: an insert with w: 1, a find at readConcern local
    assert invoke(["-c", str(path), "collection", "insert", "items", "--data", '{"_id": 1}']).exit_code == 0
    res = invoke(["-c", str(path), "collection", "find", "items", "-f", "json"])
    assert res.exit_code == 0, res.stderr
    assert [d["_id"] for d in res.json()] == [1]


def test_majority_write_concern_is_accepted_by_the_server(tmp_path: Path, mongo_server: Any, mongo_db: str) -> None:
    path = _config(tmp_path, mongo_server, mongo_db, write_concern="majority")
    res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '[{"_id": 1}, {"_id": 2}]'])
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize(("hello", "expected"), [
    ({"isWritablePrimary": True, "maxWireVersion": 21}, Topology(STANDALONE, None, 21)),
    ({"setName": "rs0", "maxWireVersion": 21}, Topology(REPLICA_SET, "rs0", 21)),
    ({"msg": "isdbgrid", "maxWireVersion": 21}, Topology(SHARDED, None, 21)),
])
def test_the_topology_is_read_from_hello(hello: dict[str, Any], expected: Topology) -> None:
    assert from_hello(hello) == expected
    assert expected.has_transactions is (expected.kind != STANDALONE)


def test_transactions_need_mongodb_4_0_on_a_replica_set_and_4_2_through_mongos() -> None:
    assert from_hello({"setName": "rs0", "maxWireVersion": 7}).has_transactions
    assert not from_hello({"setName": "rs0", "maxWireVersion": 6}).has_transactions
    assert not from_hello({"msg": "isdbgrid", "maxWireVersion": 7}).has_transactions
    assert from_hello({"msg": "isdbgrid", "maxWireVersion": 8}).has_transactions


def test_without_transactions_an_insert_keeps_the_documents_before_a_failure(
        tmp_path: Path, mongo_server: Any, mongo_db: str) -> None:
    from dbcli.mongo.topology import topology

    mc = mongo_server.client()
    try:
        if topology(mc).has_transactions:
            pytest.skip("this server has transactions: see the replica set tests below")
        mc[mongo_db].items.insert_one({"_id": 1})
    finally:
        mc.close()
    path = _config(tmp_path, mongo_server, mongo_db)
    res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '[{"_id": 2}, {"_id": 1}]'])
    assert res.exit_code == 7
    assert res.stderr == "Error: document 2: duplicate key (1 document(s) before it were inserted)\n"


# ---- a real replica set or mongos (DBCLI_TEST_MONGO_URI) --------------------------------------

@pytest.fixture
def real_mongo(mongo_server: Any) -> Topology:
    """The topology of DBCLI_TEST_MONGO_URI's server; skips unless it is a replica set or mongos."""
    from dbcli.mongo.topology import topology

    if not os.environ.get("DBCLI_TEST_MONGO_URI"):
        pytest.skip("needs a MongoDB replica set or mongos: set DBCLI_TEST_MONGO_URI (FerretDB, the test "
                    "server here, is a standalone without transactions, oplog or secondaries)")
    mc = mongo_server.client()
    try:
        found = topology(mc)
    finally:
        mc.close()
    if found.kind == STANDALONE:
        pytest.skip("DBCLI_TEST_MONGO_URI names a standalone server: these tests need a replica set or mongos")
    return found


def test_a_replica_set_or_mongos_has_transactions(real_mongo: Topology) -> None:
    assert real_mongo.has_transactions, f"MongoDB too old for transactions: wire version {real_mongo.wire_version}"


def test_an_insert_is_all_or_nothing_in_a_transaction(tmp_path: Path, mongo_server: Any, mongo_db: str,
                                                      real_mongo: Topology) -> None:
    mc = mongo_server.client()
    try:
        mc[mongo_db].items.insert_one({"_id": 1})
        path = _config(tmp_path, mongo_server, mongo_db, write_concern="majority")
        res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '[{"_id": 2}, {"_id": 1}]'])
        assert res.exit_code == 7
        assert res.stderr == "Error: document 2: duplicate key (nothing was inserted)\n"
        assert sorted(d["_id"] for d in mc[mongo_db].items.find()) == [1]
        # with transactions off, each document stands on its own as on a standalone server
        path = _config(tmp_path, mongo_server, mongo_db, transactions="off")
        res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '[{"_id": 2}, {"_id": 1}]'])
        assert res.stderr == "Error: document 2: duplicate key (1 document(s) before it were inserted)\n"
        assert sorted(d["_id"] for d in mc[mongo_db].items.find()) == [1, 2]
    finally:
        mc.close()


def test_the_write_concern_reaches_the_server(tmp_path: Path, mongo_server: Any, mongo_db: str,
                                              real_mongo: Topology) -> None:
    # more members than any test deployment has: the server refuses (or times out) instead of acking
    path = _config(tmp_path, mongo_server, mongo_db, write_concern=50, timeout=5)
    res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '{"_id": 1}'])
    assert res.exit_code != 0
    assert res.stderr.count("\n") == 1
    path = _config(tmp_path, mongo_server, mongo_db, write_concern="majority", read_concern="majority")
    assert invoke(["-c", str(path), "collection", "insert", "items", "--data", '{"_id": 2}']).exit_code == 0
    res = invoke(["-c", str(path), "collection", "find", "items", "-f", "json"])
    assert [d["_id"] for d in res.json()] == [2]


def test_reads_follow_the_read_preference(tmp_path: Path, mongo_server: Any, mongo_db: str,
                                          real_mongo: Topology) -> None:
    mc = mongo_server.client()
    try:
        mc[mongo_db].get_collection("items").insert_one({"_id": 1})
        path = _config(tmp_path, mongo_server, mongo_db, read_preference="secondaryPreferred")
        res = invoke(["-c", str(path), "collection", "count", "items", "-f", "json"])
        assert res.exit_code == 0, res.stderr  # a secondary (or the primary without one) answers
    finally:
        mc.close()


def test_a_retryable_write_survives_one_failover_error(tmp_path: Path, mongo_server: Any, mongo_db: str,
                                                       real_mongo: Topology) -> None:
    from pymongo.errors import OperationFailure

    mc = mongo_server.client()

    def fail_next_insert() -> None:
        # what a primary stepping down answers; needs the server's enableTestCommands
        mc.admin.command("configureFailPoint", "failCommand", mode={"times": 1},
                         data={"failCommands": ["insert"], "errorCode": 91, "errorLabels": ["RetryableWriteError"]})

    try:
        fail_next_insert()
    except OperationFailure as e:
        mc.close()
        pytest.skip(f"the server does not allow fail points (start it with enableTestCommands=1): {e}")
    try:
        path = _config(tmp_path, mongo_server, mongo_db)
        res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '{"_id": 1}'])
        assert res.exit_code == 0, res.stderr  # pymongo retried once
        fail_next_insert()
        path = _config(tmp_path, mongo_server, mongo_db, retry_writes=False)
        res = invoke(["-c", str(path), "collection", "insert", "items", "--data", '{"_id": 2}'])
        assert res.exit_code != 0
    finally:
        mc.admin.command("configureFailPoint", "failCommand", mode="off")
        mc.close()
