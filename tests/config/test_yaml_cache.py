"""The YAML parse cache: exact on edits, never holds a secret, survives damage, spares PyYAML's import."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbcli.config import yaml_cache
from dbcli.config.load import load_config
from dbcli.config.paths import cache_home
from dbcli.errors import ConfigError
from dbcli.reports import registry as reports


def entries() -> list[Path]:
    folder = cache_home() / "yaml"
    return sorted(folder.glob("*.marshal")) if folder.exists() else []


def test_an_edited_config_is_read_again(tmp_path: Path) -> None:
    config = tmp_path / "dbcli.yaml"
    config.write_text("mongo: {database: first}\n")
    assert load_config().mongo.database == "first"
    assert load_config().mongo.database == "first"  # served from the cache
    assert len(entries()) == 1
    # same size, same second: only the text comparison can tell
    config.write_text("mongo: {database: secnd}\n")
    assert load_config().mongo.database == "secnd"


def test_errors_are_never_cached(tmp_path: Path) -> None:
    config = tmp_path / "dbcli.yaml"
    config.write_text("mongo: {database: a}\nmongo: {database: b}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match="given twice"):
            load_config()
    assert entries() == []


@pytest.mark.parametrize("text", [
    "postgres: {password: hunter2}\n",
    "postgres: {dsn: 'postgresql://app:hunter2@db.example/shop'}\n",
    "postgres: {dsn: 'host=db.example sslpassword=hunter2'}\n",
    "mongo: {uri: 'mongodb://app:hunter2@db.example/'}\n",
    "encryption: {key: aGVsbG8taHVudGVyMi1oZWxsby1odW50ZXIyMTIzNDU=}\n",
    # a default is written in the file: it is a secret like any other
    "postgres: {password: '${NOT_SET_PW:-hunter2}'}\n",
    "postgres: {dsn: 'postgresql://app:${NOT_SET_PW:-hunter2}@db.example/shop'}\n",
])
def test_a_config_holding_a_secret_is_not_cached(tmp_path: Path, text: str) -> None:
    (tmp_path / "dbcli.yaml").write_text(text)
    load_config()
    assert entries() == []


def test_secret_references_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPW", "hunter2")
    (tmp_path / "dbcli.yaml").write_text(
        "postgres: {password: '${PGPW}', dsn: 'postgresql://app:${PGPW}@db.example/shop'}\n")
    assert load_config().postgres.password == "hunter2"
    assert load_config().postgres.password == "hunter2"
    assert len(entries()) == 1
    assert b"hunter2" not in entries()[0].read_bytes()


def test_a_damaged_entry_means_parsing_again(tmp_path: Path) -> None:
    (tmp_path / "dbcli.yaml").write_text("mongo: {database: kept}\n")
    load_config()
    for junk in (b"", b"\x00garbage", entries()[0].read_bytes()[:-5]):
        entries()[0].write_bytes(junk)
        assert load_config().mongo.database == "kept"


def test_entries_are_private(tmp_path: Path) -> None:
    (tmp_path / "dbcli.yaml").write_text("mongo: {database: x}\n")
    load_config()
    assert entries()[0].stat().st_mode & 0o777 == 0o600
    assert entries()[0].parent.stat().st_mode & 0o777 == 0o700


def test_data_marshal_cannot_hold_is_simply_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    calls: list[str] = []

    def parse(text: str) -> object:
        calls.append(text)
        return {"when": dt.date(2024, 1, 1)}

    for _ in range(2):
        assert yaml_cache.load(path, "when: 2024-01-01", "test", parse) == {"when": dt.date(2024, 1, 1)}
    assert len(calls) == 2
    assert entries() == []


def test_switched_off_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBCLI_NO_YAML_CACHE", "1")
    (tmp_path / "dbcli.yaml").write_text("mongo: {database: x}\n")
    load_config()
    assert entries() == []


def test_report_files_are_cached_too(tmp_path: Path) -> None:
    cfg = load_config()
    first = reports.get(cfg, "user-orders")
    assert any(p.name.startswith("report-") for p in entries())
    again = reports.get(cfg, "user-orders")
    assert again == first and again.digest == first.digest


def test_a_warm_run_does_not_import_yaml(tmp_path: Path) -> None:
    (tmp_path / "dbcli.yaml").write_text("mongo: {database: warm}\n")
    probe = ("import sys; from dbcli.config.load import load_config; from dbcli.reports import registry as reports; "
             "cfg = load_config(); reports.get(cfg, 'user-orders'); print('yaml' in sys.modules)")
    env = {**os.environ}
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True,
                           cwd=tmp_path).stdout.strip() for _ in range(2)]
    assert runs == ["True", "False"]


def test_the_file_text_is_not_kept(tmp_path: Path) -> None:
    """Only the parsed data is cached: a comment may hold anything."""
    (tmp_path / "dbcli.yaml").write_text("# the old password was hunter2\nmongo: {database: x}\n")
    load_config()
    assert len(entries()) == 1 and b"hunter2" not in entries()[0].read_bytes()
