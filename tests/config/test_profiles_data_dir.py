"""Which profile and data dir a config file gives (issue 15 item 7), and password files others can read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dbcli.config.load import load_config
from dbcli.config.paths import data_home
from dbcli.errors import ConfigError
from tests.helpers import invoke, write_config

PGPASS_WARNING = "has group or world access; permissions should be u=rw (0600) or less"


def test_a_file_without_profiles_is_the_builtin_profile_with_its_data_dir(tmp_path: Path) -> None:
    builtin = load_config()
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"embedded": True}})
    cfg = load_config()
    assert (cfg.profile, cfg.data_dir) == ("local", builtin.data_dir) == ("local", data_home() / "local")
    assert cfg.postgres.data_dir == builtin.postgres.data_dir == str(data_home() / "local" / "postgres")
    assert cfg.mongo.data_dir == str(data_home() / "local" / "mongo")
    assert cfg.backup.dir == builtin.backup.dir
    assert load_config(profile="local").data_dir == cfg.data_dir


def test_a_file_without_profiles_has_no_profile_default(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"embedded": True}})
    with pytest.raises(ConfigError, match=r"unknown profile 'default' \(the configuration defines no profiles\)") as e:
        load_config(profile="default")
    assert e.value.hint == "settings outside profiles: are the built-in profile 'local'"


def test_a_profile_gets_a_data_dir_of_its_own_unless_it_names_one(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write_config(tmp_path / "dbcli.yaml", {"profiles": {
        "dev": {}, "ci": {"data_dir": str(shared)}, "ci2": {"data_dir": str(shared), "postgres": {"data_dir": "/x"}},
    }})
    assert load_config(profile="dev").data_dir == data_home() / "dev"
    ci = load_config(profile="ci")
    assert (ci.data_dir, ci.postgres.data_dir, ci.mongo.data_dir, ci.backup.dir) == (
        shared, str(shared / "postgres"), str(shared / "mongo"), shared / "backups")
    assert load_config(profile="ci2").postgres.data_dir == "/x"


@pytest.mark.parametrize(("written", "expected"), [
    ("~/dbcli-data", Path.home() / "dbcli-data"),
    ("${DBCLI_TEST_NO_SUCH_DIR:-}", None),  # empty: the default, never the current directory
    ("${DBCLI_TEST_DATA:-/srv/dbcli}", Path("/srv/dbcli")),
])
def test_top_level_data_dir(tmp_path: Path, written: str, expected: Path | None) -> None:
    write_config(tmp_path / "dbcli.yaml", {"data_dir": written})
    assert load_config().data_dir == (expected or data_home() / "local")


def test_a_bad_data_dir_fails_every_command(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"profiles": {"p": {"data_dir": 5}}})
    result = invoke(["local", "status"])
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: profiles.p.data_dir: must be a path, got 5")


def test_a_profile_name_cannot_leave_the_data_home(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"profiles": {"..": {}, ".servers": {}}})
    assert load_config(profile="..").data_dir == data_home() / "_."
    assert load_config(profile=".servers").data_dir == data_home() / "_servers"


def test_config_show_says_profile_file_and_data_dir(tmp_path: Path) -> None:
    shown = invoke(["config", "show", "-f", "json"])
    assert shown.exit_code == 0
    first = list(shown.json().items())[:3]
    assert first == [("profile", "local"), ("source", None), ("data_dir", str(data_home() / "local"))]
    assert shown.stderr == f"profile local (built-in: no config file), data dir {data_home() / 'local'}\n"
    path = write_config(tmp_path / "dbcli.yaml", {"profiles": {"dev": {}}})
    shown = invoke(["config", "show", "-f", "json"])
    assert [shown.json()[k] for k in ("profile", "source", "data_dir")] == ["dev", str(path), str(data_home() / "dev")]
    assert shown.stderr == f"profile dev from {path}, data dir {data_home() / 'dev'}\n"
    table = invoke(["config", "show", "-f", "table"]).stdout
    assert "data_dir" in table and "source" in table


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_password_file_others_can_read_is_used_with_a_warning(
        tmp_path: Path, pg_config: dict[str, Any], mode: int) -> None:
    """It was used silently; libpq warns about (and ignores) such a .pgpass."""
    secret = tmp_path / "pg_password"
    secret.write_text("not-needed-by-the-test-server\n")
    secret.chmod(mode)
    write_config(tmp_path / "dbcli.yaml", {"postgres": {**pg_config["postgres"], "password_file": str(secret)}})
    result = invoke(["ping", "-f", "json"])
    assert result.exit_code == 0, result.stderr  # dbcli warns, it does not refuse (docs/configuration.md)
    assert result.stderr == (f"Warning: postgres.password_file {secret} {PGPASS_WARNING} (chmod 600 {secret})\n")
    assert "not-needed" not in result.stdout + result.stderr


def test_a_private_password_file_gives_no_warning(tmp_path: Path) -> None:
    secret = tmp_path / "mongo_password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    write_config(tmp_path / "dbcli.yaml",
                 {"mongo": {"uri": "mongodb://app@127.0.0.1:9/", "password_file": str(secret)}})
    result = invoke(["config", "show", "-f", "json"])
    assert result.exit_code == 0
    assert "Warning" not in result.stderr
    assert result.json()["mongo"]["uri"] == "mongodb://app:***@127.0.0.1:9/"
    secret.chmod(0o660)
    warned = invoke(["config", "show", "-f", "json"]).stderr
    assert f"Warning: mongo.password_file {secret} {PGPASS_WARNING}" in warned


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="needs /dev/fd")
def test_a_password_from_a_pipe_is_not_a_file_others_can_read(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.write(write, b"piped\n")
    os.close(write)
    try:
        write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "h", "password_file": f"/dev/fd/{read}"}})
        result = invoke(["config", "show", "-f", "json"])
    finally:
        os.close(read)
    assert result.exit_code == 0 and "Warning" not in result.stderr


def test_a_mongo_password_file_with_a_replica_set_uri(tmp_path: Path) -> None:
    """config.example.yaml's prod profile: a host list and a password file (was ``unexpected ValueError``)."""
    secret = tmp_path / "mongo_password"
    secret.write_text("p@ss\n")
    secret.chmod(0o600)
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"uri": "mongodb://app@m1:27017,m2:27017/?replicaSet=rs0",
                                                     "password_file": str(secret)}})
    assert load_config().mongo.uri == "mongodb://app:p%40ss@m1:27017,m2:27017/?replicaSet=rs0"
