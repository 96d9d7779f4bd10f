"""Encryption of configured columns and fields: the Encryptor, the CLI paths, psql's view, rotation."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbcli.encryption.fields import MASK, Encryptor, is_token, key_id_for, token_key_id
from dbcli.errors import CheckFailedError, ConfigError
from tests.fix_collection import KEY_A, KEY_B
from tests.helpers import Result, write_config

Cli = Callable[..., Result]
COLUMNS = {"user_profiles": ["phone", "date_of_birth"]}
FIELDS = {"events": ["data.ip", "secret"]}


def _enc(key: str = KEY_A, **kw: Any) -> Encryptor:
    return Encryptor.with_key(key, columns=COLUMNS, fields=FIELDS, **kw)


# ---- the Encryptor -----------------------------------------------------------------------------

def test_row_round_trip_and_text_conversion() -> None:
    enc = _enc(key_id="a")
    row = {"user_id": 1, "phone": "+44 20 7946 0000", "date_of_birth": dt.date(1990, 1, 2), "bio": "hi"}
    stored = enc.encrypt_row("user_profiles", row)
    assert stored["user_id"] == 1 and stored["bio"] == "hi"
    assert stored["phone"].startswith("enc:v1:a:") and "7946" not in stored["phone"]
    assert token_key_id(stored["date_of_birth"]) == "a"
    assert enc.decrypt_row("user_profiles", stored) == {**row, "date_of_birth": "1990-01-02"}
    # a fresh nonce each time
    assert enc.encrypt_row("user_profiles", row)["phone"] != stored["phone"]
    assert enc.encrypt_row("user_profiles", {"phone": None}) == {"phone": None}
    assert enc.encrypt_row("other", row) is row


def test_ciphertext_is_bound_to_its_column() -> None:
    enc = _enc()
    token = enc.encrypt_row("user_profiles", {"phone": "555"})["phone"]
    with pytest.raises(CheckFailedError) as info:
        enc.decrypt_row("user_profiles", {"date_of_birth": token})
    assert info.value.message == (f"cannot decrypt column user_profiles.date_of_birth: authentication failed "
                                  f"(wrong key for key id {key_id_for(base64.b64decode(KEY_A))!r}, or tampered "
                                  "ciphertext)")
    assert info.value.exit_code == 8
    with pytest.raises(CheckFailedError):  # a table and a collection of one name do not mix either
        enc.decrypt_value("collection", "user_profiles", "phone", token)


def test_tampered_token_and_wrong_key_fail_with_8() -> None:
    enc = _enc(key_id="k1")
    token = enc.encrypt_row("user_profiles", {"phone": "555"})["phone"]
    body = token.rsplit(":", 1)[1]
    flipped = token[:-len(body)] + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(CheckFailedError):
        enc.decrypt_row("user_profiles", {"phone": flipped})
    other = Encryptor.with_key(KEY_B, key_id="k1", columns=COLUMNS)
    with pytest.raises(CheckFailedError):
        other.decrypt_row("user_profiles", {"phone": token})


def test_missing_key_masks_reads_and_refuses_writes() -> None:
    token = _enc().encrypt_row("user_profiles", {"phone": "555"})["phone"]
    keyless = Encryptor(columns={"user_profiles": frozenset({"phone"})}, fields={})
    assert keyless.decrypt_row("user_profiles", {"phone": token, "x": 1}) == {"phone": MASK, "x": 1}
    assert keyless.decrypt_row("user_profiles", {"phone": "written before"}) == {"phone": "written before"}
    assert keyless.notices() == [f"encryption.key is not set: 1 encrypted value(s) shown as {MASK}"]
    with pytest.raises(ConfigError) as info:
        keyless.encrypt_row("user_profiles", {"phone": "555"})
    assert info.value.message == "column user_profiles.phone is encrypted but encryption.key is not set"
    assert info.value.exit_code == 3


def test_unknown_key_id_masks_and_notes() -> None:
    token = _enc(KEY_A, key_id="old").encrypt_row("user_profiles", {"phone": "555"})["phone"]
    enc = _enc(KEY_B, key_id="new")
    assert enc.decrypt_row("user_profiles", {"phone": token}) == {"phone": MASK}
    assert enc.notices() == [f"no key configured for key id old: values shown as {MASK}"]
    rotated = _enc(KEY_B, key_id="new", previous_keys={"old": KEY_A})
    assert rotated.decrypt_row("user_profiles", {"phone": token}) == {"phone": "555"}
    assert rotated.needs_rotation(token) and token_key_id(rotated.rotate_value("table", "user_profiles", "phone",
                                                                              token)) == "new"


def test_documents_nested_fields_and_arrays() -> None:
    enc = _enc()
    doc = {"_id": 1, "data": {"ip": "1.2.3.4", "path": "/"}, "secret": ["a", "b"], "list": [{"data": 1}]}
    stored = enc.encrypt_doc("events", doc)
    assert is_token(stored["data"]["ip"]) and stored["data"]["path"] == "/"
    assert all(is_token(s) for s in stored["secret"])
    assert doc["data"]["ip"] == "1.2.3.4"  # the input is not modified
    assert enc.decrypt_doc("events", stored) == doc
    assert enc.encrypt_doc("events", {"other": 1}) == {"other": 1}


def test_encrypt_update_documents() -> None:
    from dbcli.errors import InvalidInputError
    from dbcli.mongo.update_sim import encrypt_update

    enc = _enc()
    upd = encrypt_update(enc, "events", {"$set": {"data": {"ip": "9.9.9.9"}, "n": 1}, "$push": {"secret": "c"},
                                         "$unset": {"data.ip": ""}})
    assert is_token(upd["$set"]["data"]["ip"]) and upd["$set"]["n"] == 1 and is_token(upd["$push"]["secret"])
    assert upd["$unset"] == {"data.ip": ""}
    for bad, message in [({"$inc": {"secret": 1}}, "$inc cannot be applied to encrypted field 'secret'"),
                         ({"$set": {"secret.x": 1}}, "cannot update inside encrypted field 'secret' (secret.x)"),
                         ({"$rename": {"data": "d2"}}, "$rename cannot be applied to encrypted field 'data.ip'")]:
        with pytest.raises(InvalidInputError) as info:
            encrypt_update(enc, "events", bad)
        assert info.value.message == message


@pytest.mark.parametrize(("section", "message"), [
    ({"key": "c2hvcnQ=", "columns": COLUMNS}, "encryption.key: must be a base64-encoded 32-byte key (got 5 bytes)"),
    ({"key": "not base64!", "columns": COLUMNS}, "encryption.key: must be a base64-encoded 32-byte key"),
    ({"key": KEY_A, "key_id": "a:b", "columns": COLUMNS}, "encryption.key_id: must not contain ':'"),
    ({"columns": {"t": "c"}, "previous_keys": {"x": "nope"}}, "encryption.previous_keys.x: must be a base64-encoded "
                                                              "32-byte key (got 3 bytes)"),
    ({"columns": {"t": [1]}}, "encryption.columns.t: must be a list of names"),
])
def test_config_errors(tmp_path: Path, load_cfg: Callable[..., Any], section: dict[str, Any], message: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"encryption": section})
    with pytest.raises(ConfigError) as info:
        Encryptor.from_config(load_cfg())
    assert info.value.message == message


def test_from_config_none_without_targets(tmp_path: Path, load_cfg: Callable[..., Any]) -> None:
    write_config(tmp_path / "dbcli.yaml", {"encryption": {"key": KEY_A}})
    assert Encryptor.from_config(load_cfg()) is None


# ---- MongoDB fields through dbcli collection ---------------------------------------------------

def test_collection_fields_encrypted_at_rest_and_readable_with_key(mongo_config: Callable[..., Path], cli: Cli,
                                                                    coll_db: Any, tmp_path: Path) -> None:
    mongo_config(encryption={"key": KEY_A, "key_id": "a", "fields": FIELDS})
    res = cli("collection", "insert", "events", "--data", '{"_id": 1, "data": {"ip": "1.2.3.4"}, "secret": "s"}', "-q")
    assert res.exit_code == 0, res.stderr
    raw = coll_db.events.find_one()
    assert raw["data"]["ip"].startswith("enc:v1:a:") and raw["secret"].startswith("enc:v1:a:")
    res = cli("collection", "find", "events", "-f", "json")
    assert res.json() == [{"_id": 1, "data": {"ip": "1.2.3.4"}, "secret": "s"}]
    (tmp_path / "in.jsonl").write_text('{"_id": 2, "data": {"ip": "5.6.7.8"}}\n')
    assert cli("collection", "import", "events", "in.jsonl", "-q").exit_code == 0
    assert coll_db.events.find_one({"_id": 2})["data"]["ip"].startswith("enc:v1:a:")
    assert cli("collection", "update", "events", "--filter", '{"_id": 2}', "--update",
               '{"$set": {"secret": "t"}}', "-q").exit_code == 0
    assert coll_db.events.find_one({"_id": 2})["secret"].startswith("enc:v1:a:")
    res = cli("collection", "export", "events", "-f", "csv", "--fields", "_id,data.ip,secret")
    assert res.stdout == "_id,data.ip,secret\n1,1.2.3.4,s\n2,5.6.7.8,t\n"


def test_collection_without_key(mongo_config: Callable[..., Path], cli: Cli, coll_db: Any) -> None:
    mongo_config(encryption={"key": KEY_A, "key_id": "a", "fields": FIELDS})
    cli("collection", "insert", "events", "--data", '{"_id": 1, "secret": "s"}', "-q")
    mongo_config(encryption={"fields": FIELDS})
    res = cli("collection", "find", "events", "-f", "json")
    assert res.exit_code == 0
    assert res.json() == [{"_id": 1, "secret": MASK}]
    assert res.stderr == f"Warning: encryption.key is not set: 1 encrypted value(s) shown as {MASK}\n"
    res = cli("collection", "insert", "events", "--data", '{"secret": "x"}')
    assert res.exit_code == 3
    assert res.stderr == ("Error: field events.secret is encrypted but encryption.key is not set "
                          "(hint: set encryption.key (for example key: ${DBCLI_DATA_KEY}))\n")
    res = cli("collection", "insert", "events", "--data", '{"plain": "x"}', "-q")
    assert res.exit_code == 0  # documents without encrypted fields need no key
    assert cli("collection", "import", "events", "-", input='{"secret": "y"}\n').exit_code == 3
    assert coll_db.events.count_documents({}) == 2


def test_collection_wrong_key_exits_8(mongo_config: Callable[..., Path], cli: Cli) -> None:
    mongo_config(encryption={"key": KEY_A, "key_id": "a", "fields": FIELDS})
    cli("collection", "insert", "events", "--data", '{"secret": "s"}', "-q")
    mongo_config(encryption={"key": KEY_B, "key_id": "a", "fields": FIELDS})
    res = cli("collection", "find", "events")
    assert res.exit_code == 8
    assert res.stderr.startswith("Error: cannot decrypt field events.secret: authentication failed")


# ---- PostgreSQL columns: psql sees ciphertext, dbcli sees text ---------------------------------

@pytest.fixture
def pg_enc_config(tmp_path: Path, pg_server: Any, schema_db: str) -> Callable[..., Path]:
    def _write(**encryption: Any) -> Path:
        return write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(schema_db)},
                                                      "encryption": encryption})
    return _write


def _raw(pg_server: Any, db: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(pg_server.conninfo(db)) as conn:
        return conn.execute(query.encode()).fetchall()


def _seed_profiles(pg_server: Any, db: str, enc: Encryptor | None, n: int = 3) -> None:
    import psycopg

    with psycopg.connect(pg_server.conninfo(db)) as conn:
        for i in range(1, n + 1):
            (uid,) = conn.execute("INSERT INTO users (email, name) VALUES (%s, %s) RETURNING user_id",
                                  (f"u{i}@example.com", f"U{i}")).fetchone()
            row = {"user_id": uid, "phone": f"+1 555 000{i}", "date_of_birth": dt.date(1990, 1, i)}
            if enc is not None:
                row = enc.encrypt_row("user_profiles", row)
            conn.execute("INSERT INTO user_profiles (user_id, phone, date_of_birth) VALUES (%s, %s, %s)",
                         (row["user_id"], row["phone"], str(row["date_of_birth"])))


def test_table_columns_unreadable_in_psql_readable_through_dbcli(pg_enc_config: Callable[..., Path], cli: Cli,
                                                                 pg_server: Any, schema_db: str) -> None:
    from dbcli.postgres import embedded as local_pg

    pg_enc_config(key=KEY_A, key_id="a", columns=COLUMNS)
    res = cli("table", "insert", "users", "--data", '{"email": "p@example.com", "name": "P"}', "-f", "json")
    assert res.exit_code == 0, res.stderr
    uid = res.json()[0]["user_id"]
    res = cli("table", "insert", "user_profiles", "--data",
              json.dumps({"user_id": uid, "phone": "+44 20 7946 0001", "date_of_birth": "1985-03-04"}), "-f", "json")
    assert res.exit_code == 0, res.stderr
    psql = local_pg.bin_dir() / "psql"
    if psql.exists():
        proc = subprocess.run([str(psql), pg_server.conninfo(schema_db), "-AtXc",
                               "SELECT phone, date_of_birth FROM user_profiles"],
                              capture_output=True, text=True, check=True)
        shown = proc.stdout
    else:
        shown = "|".join(_raw(pg_server, schema_db, "SELECT phone, date_of_birth FROM user_profiles")[0])
    assert "7946" not in shown and "1985" not in shown and shown.count("enc:v1:a:") == 2
    res = cli("table", "get", "user_profiles", str(uid), "-f", "json")
    assert res.exit_code == 0, res.stderr
    got = res.json()
    got = got[0] if isinstance(got, list) else got
    assert (got["phone"], got["date_of_birth"]) == ("+44 20 7946 0001", "1985-03-04")


def test_table_columns_without_key(pg_enc_config: Callable[..., Path], cli: Cli, pg_server: Any,
                                   schema_db: str) -> None:
    _seed_profiles(pg_server, schema_db, _enc(key_id="a"), n=1)
    pg_enc_config(columns=COLUMNS)
    res = cli("table", "get", "user_profiles", "1", "-f", "json")
    assert res.exit_code == 0, res.stderr
    got = res.json()
    got = got[0] if isinstance(got, list) else got
    assert got["phone"] == MASK
    res = cli("table", "update", "user_profiles", "--where", "user_id=1", "--set", "phone=123")
    assert res.exit_code == 3
    assert "user_profiles.phone is encrypted but encryption.key is not set" in res.stderr


# ---- rotation ----------------------------------------------------------------------------------

def test_rotate_columns_and_fields(pg_enc_config: Callable[..., Path], cli: Cli, pg_server: Any, schema_db: str,
                                   mongo_server: Any, mongo_db: str, tmp_path: Path) -> None:
    old = _enc(KEY_A, key_id="a")
    _seed_profiles(pg_server, schema_db, old, n=5)
    # one plain value written before encryption was turned on
    _raw(pg_server, schema_db, "UPDATE user_profiles SET phone = 'plain' WHERE user_id = 5 RETURNING 1")
    client = mongo_server.client()
    coll = client[mongo_db].events
    coll.insert_many([old.encrypt_doc("events", {"_id": i, "data": {"ip": f"10.0.0.{i}"}, "secret": "s"})
                      for i in range(7)])
    base = {"postgres": {"dsn": pg_server.conninfo(schema_db)},
            "mongo": {"uri": mongo_server.uri, "database": mongo_db}}
    write_config(tmp_path / "dbcli.yaml", {**base, "encryption": {
        "key": KEY_B, "key_id": "b", "columns": COLUMNS, "fields": FIELDS}})
    res = cli("encryption", "rotate", "--batch-size", "2")
    assert res.exit_code == 3
    assert res.stderr == ("Error: no key for key id 'a' found in user_profiles.date_of_birth "
                          "(hint: add it to encryption.previous_keys)\n")
    write_config(tmp_path / "dbcli.yaml", {**base, "encryption": {
        "key": KEY_B, "key_id": "b", "previous_keys": {"a": KEY_A}, "columns": COLUMNS, "fields": FIELDS}})
    res = cli("encryption", "rotate", "--batch-size", "2", "--dry-run", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert {r["target"]: (r["rotated"], r["encrypted"]) for r in res.json()} == {
        "user_profiles.date_of_birth": (5, 0), "user_profiles.phone": (4, 1), "events.data.ip": (7, 0),
        "events.secret": (7, 0)}
    assert all(token_key_id(v) == "a" for (v,) in _raw(pg_server, schema_db,
                                                       "SELECT date_of_birth FROM user_profiles"))
    res = cli("encryption", "rotate", "--batch-size", "2", "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "re-encrypted 24 value(s); 0 already under the current key\n"
    for phone, dob in _raw(pg_server, schema_db, "SELECT phone, date_of_birth FROM user_profiles"):
        assert token_key_id(phone) == "b" and token_key_id(dob) == "b"
    new = Encryptor.with_key(KEY_B, key_id="b", columns=COLUMNS, fields=FIELDS)
    assert sorted(new.decrypt_row("user_profiles", {"phone": p})["phone"]
                  for (p,) in _raw(pg_server, schema_db, "SELECT phone FROM user_profiles")) == [
        "+1 555 0001", "+1 555 0002", "+1 555 0003", "+1 555 0004", "plain"]
    assert [new.decrypt_doc("events", d)["data"]["ip"] for d in coll.find().sort("_id", 1)] == [
        f"10.0.0.{i}" for i in range(7)]
    client.close()
    # idempotent: a second run has nothing left to do
    res = cli("encryption", "rotate", "-f", "json")
    assert sum(r["rotated"] + r["encrypted"] for r in res.json()) == 0
    assert res.stderr == "re-encrypted 0 value(s); 24 already under the current key\n"


def test_rotate_needs_a_key_and_targets(tmp_path: Path, cli: Cli) -> None:
    write_config(tmp_path / "dbcli.yaml", {"encryption": {"key": KEY_A}})
    res = cli("encryption", "rotate")
    assert res.exit_code == 3
    assert res.stderr == "Error: nothing to rotate: encryption.columns and encryption.fields are empty\n"
    write_config(tmp_path / "dbcli.yaml", {"encryption": {"columns": COLUMNS}})
    assert cli("encryption", "rotate").exit_code == 3


def test_rotate_unknown_column_exits_5(pg_enc_config: Callable[..., Path], cli: Cli) -> None:
    pg_enc_config(key=KEY_A, columns={"user_profiles": ["phnoe"]})
    res = cli("encryption", "rotate")
    assert res.exit_code == 5
    assert "phnoe" in res.stderr


def test_keygen() -> None:
    from tests.helpers import invoke

    res = invoke(["encryption", "keygen"])
    assert res.exit_code == 0
    assert len(base64.b64decode(res.stdout.strip())) == 32


def test_collection_filter_or_sort_on_encrypted_field_refused(mongo_config: Callable[..., Path], cli: Cli) -> None:
    mongo_config(encryption={"key": KEY_A, "fields": FIELDS})
    cli("collection", "insert", "events", "--data", '{"secret": "s", "data": {"ip": "1"}}', "-q")
    res = cli("collection", "find", "events", "--filter", '{"$or": [{"data.ip": "1"}]}')
    assert res.exit_code == 5
    assert res.stderr == "Error: field events.data.ip is encrypted: it cannot be filtered on\n"
    res = cli("collection", "export", "events", "--sort", '{"secret": 1}')
    assert res.stderr == "Error: field events.secret is encrypted: it cannot be sorted on\n"
    res = cli("collection", "count", "events", "--filter", '{"secret": {"$exists": true}, "data": {"$ne": null}}')
    assert res.exit_code == 5  # "data" holds an encrypted field: comparing it would compare ciphertext
    res = cli("collection", "count", "events", "--filter", '{"secret": {"$exists": true}}', "-f", "json")
    assert res.json()["count"] == 1
