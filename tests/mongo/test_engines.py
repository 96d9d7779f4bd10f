"""``mongo: {embedded: true, engine: ...}``: the engine setting, what is missing, and each
PostgreSQL-backed engine started, used and stopped with its cluster (issue 19 item 3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import invoke, write_config


def _ferretdb2_build() -> str | None:
    from dbcli.mongo import pg_backend

    root = pg_backend.ferretdb2_build()
    return str(root) if root else None


# resolved at import, before the per-test environment points XDG_CACHE_HOME elsewhere
FERRETDB2 = _ferretdb2_build()


def _need(what: str | None, reason: str) -> None:
    if what is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _config(tmp_path: Path, engine: str) -> Path:
    return write_config(tmp_path / "dbcli.yaml", {"data_dir": str(tmp_path / "d"),
                                                  "mongo": {"embedded": True, "engine": engine}})


def test_an_unknown_engine_is_a_config_error_naming_the_closest(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ferretdb3")
    res = invoke(["-c", str(cfg), "collection", "list"])
    assert res.exit_code == 3
    assert res.stderr == ("Error: mongo.engine: must be one of ferretdb1-sqlite, ferretdb1-postgres, ferretdb2, "
                          "got 'ferretdb3' (hint: did you mean 'ferretdb2'?)\n")


def test_ferretdb2_not_built_exits_3_naming_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "nothing-built"
    empty.mkdir()
    monkeypatch.setenv("DBCLI_FERRETDB2", str(empty))
    res = invoke(["-c", str(_config(tmp_path, "ferretdb2")), "collection", "list"])
    assert res.exit_code == 3
    assert res.stderr.count("\n") == 1
    assert f"FerretDB v2.7.0 + DocumentDB not built in {empty}" in res.stderr
    assert "scripts/build-ferretdb2" in res.stderr
    assert not (tmp_path / "d" / "mongo" / "dbcli-server.json").exists()


def _round_trip(tmp_path: Path, engine: str, version_prefix: str) -> None:
    cfg = str(_config(tmp_path, engine))
    try:
        # twice: FerretDB 2 takes a validator on create but keeps nothing, and refused the
        # collMod of the second apply (Unknown $jsonSchema keyword: required) before dbcli knew it
        for _ in range(2):
            applied = invoke(["-c", cfg, "schema", "apply", "--target", "mongo", "-f", "json"])
            assert applied.exit_code == 0, applied.stderr
        insert = invoke(["-c", cfg, "collection", "insert", "things", "--data", '{"_id": 1, "n": 2}', "-q"])
        assert insert.exit_code == 0, insert.stderr
        found = invoke(["-c", cfg, "collection", "find", "things", "-f", "json"])
        assert found.exit_code == 0, found.stderr
        assert found.json() == [{"_id": 1, "n": 2}]
        ping = invoke(["-c", cfg, "ping", "-f", "json"])  # FerretDB 2 says so in buildInfo too
        assert next(r["version"] for r in ping.json() if r["server"] == "mongo").startswith(version_prefix)
        status = [r for r in invoke(["-c", cfg, "local", "status", "-f", "json"]).json() if r["server"] == "mongo"]
        assert status[0]["state"] == "running" and status[0]["version"].startswith(engine)
    finally:
        stop = invoke(["-c", cfg, "local", "stop"])
    assert "mongo: stopped" in stop.stderr
    pg_data = tmp_path / "d" / "mongo" / f"pg-{engine}" / "data"
    assert (pg_data / "PG_VERSION").exists()
    assert not (pg_data / "postmaster.pid").exists()  # the cluster stopped with its FerretDB


def test_ferretdb2_engine_starts_with_its_cluster_and_stops_both(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _need(FERRETDB2, "FerretDB 2.7 (ferretdb2) is not built: run scripts/build-ferretdb2")
    assert FERRETDB2 is not None
    monkeypatch.setenv("DBCLI_FERRETDB2", FERRETDB2)
    _round_trip(tmp_path, "ferretdb2", "FerretDB 2.7")


def test_ferretdb1_postgres_engine_starts_with_its_cluster_and_stops_both(tmp_path: Path) -> None:
    from dbcli.mongo.embedded import built_ferretdb

    _need(built_ferretdb(), "no FerretDB 1.24 binary (run scripts/build-ferretdb)")
    _round_trip(tmp_path, "ferretdb1-postgres", "FerretDB 1.24")
