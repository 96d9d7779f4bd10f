"""Loading the configuration: finding the file, choosing the profile, merging, building the model.

Resolution order for the file: --config PATH, $DBCLI_CONFIG, ./dbcli.yaml,
$XDG_CONFIG_HOME/dbcli/config.yaml; with none, the built-in profile ``local`` on the embedded
PostgreSQL. Profile: --profile NAME, $DBCLI_PROFILE, ``default_profile``, then the only/first one.
Sections at the top level are shared by every profile; a profile overrides them key by key. A file
without ``profiles:`` configures the built-in profile ``local``: same name, same data dir.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from dbcli.config.model import (
    BUILTIN_PROFILE,
    MONGO_ENGINES,
    ActivityConfig,
    BackupConfig,
    CacheConfig,
    Config,
    EncryptionConfig,
    MailConfig,
    MongoConfig,
    PostgresConfig,
    ReportsConfig,
    SchemaConfig,
)
from dbcli.config.mongo_topology import check_mongo_topology
from dbcli.config.paths import cache_home, config_home, profile_data_dir
from dbcli.config.secrets import read_secret, with_password
from dbcli.config.typed import Where, build, interpolate, suggest, unknown_key
from dbcli.config.yamlfile import read_yaml
from dbcli.errors import ConfigError

SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name not in ("profile", "source", "data_dir")]
PROFILE_KEYS = {"data_dir", *SECTIONS}
TOP_LEVEL = {"profiles", "default_profile", *PROFILE_KEYS}


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("DBCLI_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from $DBCLI_CONFIG)")
        return path
    for candidate in (Path("dbcli.yaml"), config_home() / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def profile_names(path: str | None = None) -> list[str]:
    """The profiles the config file defines (the built-in one when it defines none)."""
    source = find_config_file(path)
    profiles = (read_yaml(source) if source else {}).get("profiles")
    return [str(n) for n in profiles] if isinstance(profiles, dict) and profiles else [BUILTIN_PROFILE]


def load_config(path: str | None = None, profile: str | None = None) -> Config:
    """The typed configuration of ``profile``; ConfigError (exit 3) naming the first problem."""
    source = find_config_file(path)
    raw: dict[str, Any] = read_yaml(source) if source else {}
    for key in raw:
        if key not in TOP_LEVEL:
            raise unknown_key(key, key, TOP_LEVEL)
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("profiles: must be a mapping of profile names to settings")
    name = profile or os.environ.get("DBCLI_PROFILE") or raw.get("default_profile")
    if name is None:
        # a file without profiles: configures the built-in profile, data dir included: the
        # data of `dbcli demo` stays in use when a config file appears
        name = next(iter(profiles), BUILTIN_PROFILE)
    if profiles and name not in profiles:
        raise ConfigError(f"unknown profile {name!r}", hint=suggest(str(name), profiles))
    if not profiles and name != BUILTIN_PROFILE:
        raise ConfigError(f"unknown profile {name!r} (the configuration defines no profiles)",
                          hint=f"settings outside profiles: are the built-in profile {BUILTIN_PROFILE!r}")
    chosen = profiles.get(name) or {}
    if not isinstance(chosen, dict):
        raise ConfigError(f"profiles.{name}: must be a mapping")
    for key in chosen:
        if key not in PROFILE_KEYS:
            raise unknown_key(f"profiles.{name}.{key}", key, PROFILE_KEYS)
    merged = _merge({k: v for k, v in raw.items() if k in PROFILE_KEYS}, chosen)
    return _build(str(name), source.absolute() if source else None, merged, _origin(str(name), chosen))


def _origin(name: str, chosen: dict[str, Any]) -> Where:
    """Names a key as the user wrote it: under ``profiles.<name>.`` when the profile set it."""
    def where(dotted: str) -> str:
        node: Any = chosen
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return dotted
            node = node[part]
        return f"profiles.{name}.{dotted}"
    return where


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(profile: str, source: Path | None, merged: dict[str, Any], where: Where) -> Config:
    base = _data_dir(profile, merged.get("data_dir"), where)
    pg = _postgres(merged.get("postgres"), where, base)
    mongo = build(MongoConfig, merged.get("mongo"), "mongo", where, data_dir=str(base / "mongo"))
    if mongo.embedded and mongo.uri:
        raise ConfigError("mongo.embedded is true but mongo.uri is set too", hint="use one or the other")
    if mongo.engine is not None and mongo.engine not in MONGO_ENGINES:
        raise ConfigError(f"{where('mongo.engine')}: must be one of {', '.join(MONGO_ENGINES)}, got {mongo.engine!r}",
                          hint=suggest(mongo.engine, MONGO_ENGINES))
    check_mongo_topology(mongo, where)
    mongo.data_dir = str(Path(mongo.data_dir).expanduser())
    if mongo.password_file and mongo.uri:
        mongo.uri = with_password(mongo.uri, read_secret(mongo.password_file, "mongo.password_file"),
                                  "mongo.password_file")
    encryption = build(EncryptionConfig, merged.get("encryption"), "encryption", where)
    _check_key_id(encryption, where)
    return Config(
        profile=profile, source=source, data_dir=base, postgres=pg, mongo=mongo,
        backup=_backup(merged.get("backup"), where, base),
        cache=build(CacheConfig, merged.get("cache"), "cache", where, dir=cache_home() / "results"),
        schema=build(SchemaConfig, merged.get("schema"), "schema", where),
        reports=build(ReportsConfig, merged.get("reports"), "reports", where),
        encryption=encryption,
        activity=build(ActivityConfig, merged.get("activity"), "activity", where),
        mail=_mail(merged.get("mail"), where),
    )


def _data_dir(profile: str, raw: Any, where: Where) -> Path:
    """``data_dir:`` as written (``~`` and ``${VAR}`` expanded), else <data home>/<profile>."""
    if raw is None:
        return profile_data_dir(profile)
    if not isinstance(raw, str):
        raise ConfigError(f"{where('data_dir')}: must be a path, got {raw!r}"[:200])
    text = interpolate(raw, where("data_dir"))
    return Path(text).expanduser() if text else profile_data_dir(profile)


def _postgres(raw: Any, where: Where, base: Path) -> PostgresConfig:
    given = raw if isinstance(raw, dict) else {}
    pg = build(PostgresConfig, raw, "postgres", where, data_dir=str(base / "postgres"))
    explicit_server = bool(pg.dsn or pg.host)
    if given.get("embedded") is None:
        pg.embedded = not explicit_server
    elif pg.embedded and explicit_server:
        raise ConfigError("postgres.embedded is true but postgres.dsn/host is set too",
                          hint="use one or the other")
    if pg.pool.min_size > pg.pool.max_size:
        raise ConfigError("postgres.pool.min_size is larger than postgres.pool.max_size")
    if pg.citus.workers and not pg.embedded:
        raise ConfigError(f"{where('postgres.citus.workers')}: a local Citus cluster needs postgres.embedded: true",
                          hint="for a Citus cluster of your own, set postgres.dsn to its coordinator")
    pg.data_dir = str(Path(pg.data_dir).expanduser())
    if pg.password_file and pg.password is None:
        pg.password = read_secret(pg.password_file, "postgres.password_file")
    return pg


def _mail(raw: Any, where: Where) -> MailConfig:
    mail = build(MailConfig, raw, "mail", where)
    if mail.ssl and mail.starttls:
        raise ConfigError(f"{where('mail.ssl')} and mail.starttls are both true",
                          hint="use one: ssl for port 465, starttls for 587")
    if mail.password is not None and mail.password_file:
        raise ConfigError(f"{where('mail.password')} and mail.password_file are both set", hint="use one or the other")
    if (mail.password is not None or mail.password_file) and not mail.user:
        raise ConfigError(f"{where('mail.user')} is not set, but a mail password is")
    if mail.user and mail.password is None and not mail.password_file:
        # without one the login was skipped and the server's refusal came only at the send
        raise ConfigError(f"{where('mail.user')} is set, but neither mail.password nor mail.password_file",
                          hint="a server that needs no login needs no mail.user")
    return mail


def _backup(raw: Any, where: Where, base: Path) -> BackupConfig:
    backup = build(BackupConfig, raw, "backup", where, dir=base / "backups")
    s3 = backup.s3
    if s3.addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(f"{where('backup.s3.addressing_style')}: must be auto, path or virtual, "
                          f"got {s3.addressing_style!r}"[:200])
    if s3.secret_access_key_file and s3.secret_access_key is None:
        s3.secret_access_key = read_secret(s3.secret_access_key_file, "backup.s3.secret_access_key_file")
    if (s3.access_key_id is None) != (s3.secret_access_key is None):
        raise ConfigError("backup.s3: access_key_id and secret_access_key go together (or neither: the AWS "
                          "environment and profile then apply)")
    return backup


def _check_key_id(enc: EncryptionConfig, where: Where) -> None:
    if enc.key_id is None:
        return
    if ":" in enc.key_id:  # the id is a field of the ``enc:v1:<key_id>:...`` token
        raise ConfigError(f"{where('encryption.key_id')}: must not contain ':'")
    if enc.key is not None and enc.previous_keys.get(enc.key_id, enc.key) != enc.key:
        raise ConfigError(f"encryption.key_id {enc.key_id!r} is also in encryption.previous_keys "
                          "with a different key")
