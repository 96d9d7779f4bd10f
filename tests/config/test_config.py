"""Configuration: lookup order, profiles, interpolation, validation, redaction (exit 3 on errors)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dbcli.config.load import load_config
from dbcli.config.redact import redact_text
from dbcli.errors import ConfigError
from tests.helpers import invoke


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_no_config_gives_builtin_local_profile_on_embedded_postgres() -> None:
    cfg = load_config()
    assert cfg.profile == "local"
    assert cfg.postgres.embedded is True
    assert cfg.mongo.database == "user_analytics"
    assert cfg.source is None


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "home" / "xdg_config_home" / "dbcli"
    xdg.mkdir(parents=True)
    write(xdg / "config.yaml", "mongo: {database: from_xdg}\n")
    assert load_config().mongo.database == "from_xdg"
    write(tmp_path / "dbcli.yaml", "mongo: {database: from_cwd}\n")
    assert load_config().mongo.database == "from_cwd"
    env = write(tmp_path / "env.yaml", "mongo: {database: from_env}\n")
    monkeypatch.setenv("DBCLI_CONFIG", str(env))
    assert load_config().mongo.database == "from_env"
    flag = write(tmp_path / "flag.yaml", "mongo: {database: from_flag}\n")
    assert load_config(str(flag)).mongo.database == "from_flag"


def test_profiles_and_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "dbcli.yaml", """
default_profile: dev
mongo: {connect_timeout: 2}
profiles:
  dev: {mongo: {database: dev_db}}
  prod: {mongo: {database: prod_db, uri: "mongodb://u:pw@db.example:27017"}}
""")
    assert load_config().profile == "dev"
    assert load_config().mongo.connect_timeout == 2  # shared top-level section merged in
    monkeypatch.setenv("DBCLI_PROFILE", "prod")
    assert load_config().mongo.database == "prod_db"
    assert load_config(profile="dev").mongo.database == "dev_db"
    with pytest.raises(ConfigError, match="unknown profile 'prdo'") as e:
        load_config(profile="prdo")
    assert e.value.hint == "did you mean 'prod'?"


def test_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "dbcli.yaml", "postgres: {host: '${PGH}', port: '${PGP:-6543}', user: 'u_${PGH}'}\n")
    monkeypatch.setenv("PGH", "db1")
    cfg = load_config()
    assert (cfg.postgres.host, cfg.postgres.port, cfg.postgres.user) == ("db1", 6543, "u_db1")
    assert cfg.postgres.embedded is False


def test_unset_variable_names_variable_and_key(tmp_path: Path) -> None:
    write(tmp_path / "dbcli.yaml", "profiles: {p: {postgres: {password: '${NOPE_PW}'}}}\n")
    with pytest.raises(ConfigError, match=r"NOPE_PW is not set \(used by profiles\.p\.postgres\.password\)"):
        load_config()


def test_unknown_key_suggests(tmp_path: Path) -> None:
    write(tmp_path / "dbcli.yaml", "postgres: {conect_timeout: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'postgres.conect_timeout'") as e:
        load_config()
    assert e.value.hint == "did you mean 'connect_timeout'?"


def test_wrong_type(tmp_path: Path) -> None:
    write(tmp_path / "dbcli.yaml", "postgres: {port: many}\n")
    with pytest.raises(ConfigError, match="postgres.port: must be an integer"):
        load_config()


@pytest.mark.parametrize(("text", "message"), [
    ("postgres: [unclosed\n", "malformed YAML"),
    ("postgres: {conect_timeout: 3}\n", "unknown key 'postgres.conect_timeout'"),
    ("postgres: {password: '${UNSET_VAR_X}'}\n", "UNSET_VAR_X is not set"),
    ("postgres: !!python/object:os.system {}\n", "tag not allowed"),
    ("- a list\n", "top level must be a mapping"),
    ("postgres: {port: 1}\npostgres: {port: 2}\n", "line 2: key 'postgres' is given twice"),
])
def test_bad_config_exits_3_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "dbcli.yaml", text)
    result = invoke(["config", "show"])
    assert result.exit_code == 3
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    write(tmp_path / "dbcli.yaml", f"postgres: {{host: h, password_file: {tmp_path / 'pw'}}}\n")
    assert load_config().postgres.password == "s3cret"


@pytest.mark.parametrize("text", [
    "postgresql://alice:s3cret@db:5432/app",
    "host=db password=s3cret user=alice",
    "host=db password='s3 cret' user=alice",
    "mongodb://alice:s3cret@m1:27017,m2:27017/?replicaSet=rs",
    "redis://:s3cret@localhost:6379/0",
    "postgresql://db/app?password=s3cret",
    "host=db sslpassword=s3cret sslkey=/k",
    "postgresql://db/app?sslpassword=s3cret",
])
def test_redact_text(text: str) -> None:
    assert "s3cret" not in redact_text(text)
    assert "s3 cret" not in redact_text(text)


def _key(word: str) -> str:
    """A valid base64 32-byte key whose text is easy to look for."""
    return base64.b64encode(word.encode().ljust(32, b"!")).decode()


def test_config_show_never_shows_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pwfile").write_text("filesecret")
    monkeypatch.setenv("ENV_PW", "envsecret")
    keys = {name: _key(name) for name in ("bkpsecret", "datakeysecret", "oldkeysecret")}
    write(tmp_path / "dbcli.yaml", f"""
profiles:
  a:
    postgres: {{dsn: "postgresql://u:dsnsecret@h/db"}}
    mongo: {{uri: "mongodb://u:urisecret@h:27017/"}}
    cache: {{url: "redis://:redissecret@h:6379/0"}}
    backup: {{encryption_key: "{keys['bkpsecret']}"}}
    encryption: {{key: "{keys['datakeysecret']}", previous_keys: {{old1: "{keys['oldkeysecret']}"}}}}
  b:
    postgres: {{host: h, user: u, password: "${{ENV_PW}}"}}
    mongo: {{uri: "mongodb://u@h:27017/", password_file: "{tmp_path / 'pwfile'}"}}
  c:
    postgres: {{host: h, password_file: "{tmp_path / 'pwfile'}"}}
""")
    for profile in ("a", "b", "c"):
        for fmt in ("json", "table", "csv"):
            result = invoke(["--profile", profile, "config", "show", "--format", fmt])
            assert result.exit_code == 0, result.stderr
            for secret in ("dsnsecret", "urisecret", "redissecret", "envsecret", "filesecret", *keys.values()):
                assert secret not in result.stdout + result.stderr
    shown = invoke(["--profile", "a", "config", "show", "-f", "json"]).json()
    assert shown["postgres"]["dsn"] == "postgresql://u:***@h/db"
    assert shown["backup"]["encryption_key"] == "***"
    assert shown["encryption"]["previous_keys"] == {"old1": "***"}
