"""Profiles without surprises (issue 15 item 7), replayed with fresh XDG dirs on the embedded servers.

After `dbcli demo`, writing `mongo: {embedded: true}` to ~/.config/dbcli/config.yaml switched to a
profile `default` with a new empty PostgreSQL, `table get users 1` said unknown table, and the
demo's server ran on where `local stop` no longer saw it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dbcli.config.paths import servers_registry
from tests.helpers import invoke, write_config

pytestmark = pytest.mark.skipif(bool(os.environ.get("DBCLI_TEST_PG_DSN")),
                                reason="uses the embedded server, not $DBCLI_TEST_PG_DSN")


def rows(args: list[str]) -> list[tuple[str, str, str, bool]]:
    result = invoke([*args, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    return [(r["server"], r["state"], r["data_dir"], r["in_profile"]) for r in result.json()]


def test_a_config_file_keeps_the_builtin_profiles_data(tmp_path: Path, mongo_server: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    binary = getattr(mongo_server, "binary", None)
    if binary is None:
        pytest.skip("needs a FerretDB binary (tests run against $DBCLI_TEST_MONGO_URI)")
    monkeypatch.setenv("DBCLI_FERRETDB", binary)
    home = tmp_path / "home"
    local = home / "xdg_data_home" / "dbcli" / "local"
    config = home / "xdg_config_home" / "dbcli" / "config.yaml"
    try:
        # what `dbcli demo` leaves behind, in the built-in profile: the shop's tables with data
        assert invoke(["schema", "apply"]).exit_code == 0
        seeded = invoke(["seed", "--users", "3", "--products", "3", "--orders", "3"])
        assert seeded.exit_code == 0, seeded.stderr
        config.parent.mkdir(parents=True)
        config.write_text("mongo: {embedded: true}\n")  # as the docs suggest
        got = invoke(["table", "get", "users", "1", "-f", "json"])
        assert got.exit_code == 0, got.stderr  # was: unknown table 'users' (a new empty server)
        assert got.json()["user_id"] == 1
        assert invoke(["ping"]).exit_code == 0  # starts the local FerretDB
        shown = invoke(["config", "show", "-f", "json"])
        assert [shown.json()[k] for k in ("profile", "source", "data_dir")] == ["local", str(config), str(local)]
        assert rows(["local", "status"]) == [("postgres", "running", str(local / "postgres"), True),
                                             ("mongo", "running", str(local / "mongo"), True)]
        assert not (home / "xdg_data_home" / "dbcli" / "default").exists()
        stop = invoke(["local", "stop"])
        assert stop.stderr == "postgres: stopped\nmongo: stopped\n"
        assert [r[1] for r in rows(["local", "status"])] == ["stopped", "stopped"]
    finally:
        invoke(["local", "stop", "--all"])


def test_local_status_and_stop_see_the_servers_of_other_profiles(tmp_path: Path) -> None:
    elsewhere = tmp_path / "d"  # outside the data home: found through the registry only
    write_config(tmp_path / "dbcli.yaml", {"profiles": {
        "far": {"data_dir": str(elsewhere)},
        "remote": {"postgres": {"dsn": "postgresql://nobody@127.0.0.1:9/none"}},
    }})
    try:
        assert invoke(["--profile", "far", "ping"]).exit_code == 0
        assert list(servers_registry().glob("postgres-*.json"))
        far = ("postgres", "running", str(elsewhere / "postgres"))
        assert rows(["--profile", "far", "local", "status"]) == [(*far, True)]
        status = invoke(["--profile", "remote", "local", "status", "-f", "json"])
        assert [(r["server"], r["state"], r["data_dir"], r["in_profile"]) for r in status.json()] == [(*far, False)]
        assert "`dbcli local stop --all` stops them too" in status.stderr
        stop = invoke(["--profile", "remote", "local", "stop"])
        assert stop.exit_code == 0
        assert stop.stderr == (f"still running, not this profile's: postgres ({elsewhere / 'postgres'}); "
                               "`dbcli local stop --all` stops them\n")
        assert rows(["--profile", "remote", "local", "status"]) == [(*far, False)]
        stop = invoke(["--profile", "remote", "local", "stop", "--all"])
        assert stop.stderr == f"postgres ({elsewhere / 'postgres'}): stopped\n"
        assert rows(["--profile", "remote", "local", "status"]) == []
        assert list(servers_registry().glob("*.json")) == []
    finally:
        invoke(["--profile", "remote", "local", "stop", "--all"])


def test_a_note_of_a_server_that_died_is_pruned(tmp_path: Path) -> None:
    from dbcli.servers import registry

    gone = tmp_path / "gone" / "postgres"
    registry.note("postgres", gone)
    damaged = servers_registry() / "mongo-00000000.json"
    damaged.write_text("{")
    assert rows(["local", "status"]) == [("postgres", "stopped", str(tmp_path / "home" / "xdg_data_home" / "dbcli"
                                                                      / "local" / "postgres"), True)]
    assert list(servers_registry().glob("*.json")) == []
