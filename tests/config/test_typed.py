"""The typed sections: every value checked once at load, one error line naming its path (exit 3)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dbcli.config.load import load_config
from dbcli.config.paths import cache_home, data_home
from dbcli.errors import ConfigError
from tests.helpers import invoke

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


def write(tmp_path: Path, text: str) -> None:
    (tmp_path / "dbcli.yaml").write_text(text)


def test_defaults_are_resolved_and_typed() -> None:
    cfg = load_config()
    assert cfg.backup.dir == data_home() / "local" / "backups" == cfg.data_dir / "backups"
    assert (cfg.backup.compression, cfg.backup.encryption_key, cfg.backup.pg_dump) == (1, None, None)
    assert cfg.backup.retention.keep_last == 0
    assert (cfg.cache.dir, cfg.cache.url, cfg.cache.ttl) == (cache_home() / "results", None, 0)
    assert cfg.schema.dir is None and cfg.reports.dir is None and cfg.reports.timeout == 300.0
    assert cfg.encryption.key is None and cfg.encryption.columns == {} and cfg.encryption.previous_keys == {}
    assert cfg.activity.bucket_size == 200
    assert (cfg.postgres.pool.min_size, cfg.postgres.pool.max_size) == (1, 4)


def test_values_are_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEVEL", "7")
    monkeypatch.setenv("DATA_KEY", KEY)
    write(tmp_path, f"""
backup: {{dir: ~/bk, compression: '${{LEVEL}}', encryption_key: {KEY}, retention: {{keep_daily: 3}}}}
cache: {{ttl: 60, dir: '${{NO_SUCH_DIR:-}}'}}
schema: {{dir: ./schemas}}
reports: {{timeout: 2.5}}
encryption: {{key: '${{DATA_KEY}}', key_id: k2, previous_keys: {{k1: {OTHER_KEY}}}, columns: {{users: email}},
             fields: {{events: [data.ip], empty: []}}}}
activity: {{bucket_size: 5}}
""")
    cfg = load_config()
    assert cfg.backup.dir == Path.home() / "bk" and cfg.backup.compression == 7
    assert cfg.backup.encryption_key == bytes(range(32)) and cfg.backup.retention.keep_daily == 3
    assert cfg.cache.ttl == 60 and cfg.cache.dir == cache_home() / "results"  # empty: the default
    assert cfg.schema.dir == Path("schemas") and cfg.reports.timeout == 2.5
    assert cfg.encryption.key == bytes(range(32)) and cfg.encryption.previous_keys == {"k1": bytes(range(1, 33))}
    assert cfg.encryption.columns == {"users": ["email"]} and cfg.encryption.fields == {"events": ["data.ip"]}
    assert cfg.activity.bucket_size == 5
    assert KEY not in repr(cfg)


@pytest.mark.parametrize(("text", "message"), [
    ("postgres: {pool: {min_size: -1}}", "postgres.pool.min_size: must be at least 0, got -1"),
    ("postgres: {pool: {min_size: 5}}", "postgres.pool.min_size is larger than postgres.pool.max_size"),
    ("postgres: {port: 70000}", "postgres.port: must be an integer from 1 to 65535, got 70000"),
    ("mongo: {connect_timeout: soon}", "mongo.connect_timeout: must be a number, got 'soon'"),
    ("mongo: {write_concern: [1]}", "mongo.write_concern: must be a string or an integer, got [1]"),
    ("backup: {compression: 12}", "backup.compression: must be an integer from 0 to 9, got 12"),
    ("backup: {compression: fast}", "backup.compression: must be an integer, got 'fast'"),
    ("backup: {retention: {keep_daily: -1}}", "backup.retention.keep_daily: must be at least 0, got -1"),
    ("backup: {retention: [7]}", "backup.retention: must be a mapping"),
    ("backup: {encryption_key: nope}", "backup.encryption_key: must be a base64-encoded 32-byte key"),
    ("backup: {dir: 5}", "backup.dir: must be a path, got 5"),
    ("cache: {ttl: -5}", "cache.ttl: must be at least 0, got -5"),
    ("cache: {ttl: long}", "cache.ttl: must be an integer, got 'long'"),
    ("schema: {dir: [a]}", "schema.dir: must be a path, got ['a']"),
    ("reports: {timeout: 0}", "reports.timeout: must be more than 0, got 0"),
    ("encryption: {columns: users}", "encryption.columns: must be a mapping of names to lists"),
    ("encryption: {fields: {events: [1]}}", "encryption.fields.events: must be a list of names"),
    (f"encryption: {{key: {KEY}, key_id: k1, previous_keys: {{k1: {OTHER_KEY}}}}}",
     "encryption.key_id 'k1' is also in encryption.previous_keys with a different key"),
    ("activity: {bucket_size: 500}", "activity.bucket_size: must be an integer from 1 to 200, got 500"),
    ("activity: {bucket_size: true}", "activity.bucket_size: must be an integer, got True"),
    ("activity: 3", "activity: must be a mapping"),
])
def test_a_bad_value_exits_3_with_one_line_naming_its_path(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text + "\n")
    result = invoke(["config", "show"])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.count("\n") == 1


def test_unknown_key_in_a_section_suggests(tmp_path: Path) -> None:
    write(tmp_path, "backup: {retention: {keep_dayly: 3}}\n")
    with pytest.raises(ConfigError, match="unknown key 'backup.retention.keep_dayly'") as e:
        load_config()
    assert e.value.hint == "did you mean 'keep_daily'?"


def test_the_path_says_where_the_value_was_written(tmp_path: Path) -> None:
    write(tmp_path, "cache: {ttl: -1}\nprofiles:\n  dev: {backup: {retention: {keep_last: -2}}}\n"
                    "  prod: {cache: {url: 'redis://h'}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(profile="dev")
    assert e.value.message == "profiles.dev.backup.retention.keep_last: must be at least 0, got -2"
    with pytest.raises(ConfigError) as e:
        load_config(profile="prod")
    assert e.value.message == "cache.ttl: must be at least 0, got -1"  # the shared section


def test_a_value_from_the_environment_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET", "0")
    write(tmp_path, "profiles: {p: {activity: {bucket_size: '${BUCKET}'}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config()
    assert e.value.message == "profiles.p.activity.bucket_size: must be an integer from 1 to 200, got 0"


def test_config_show_names_profile_and_data_dir(tmp_path: Path) -> None:
    write(tmp_path, "profiles: {dev: {}}\n")
    shown = invoke(["config", "show", "-f", "json"]).json()
    assert shown["profile"] == "dev"
    assert shown["data_dir"] == str(data_home() / "dev")
    assert shown["backup"]["dir"] == str(data_home() / "dev" / "backups")
