"""Every config example in the docs loads through dbcli's loader (issue 15 found two that did not).

A ```yaml block is a config example when a top-level key of it is one of the config file's
(``postgres:``, ``profiles:``, ``backup:``...); CI workflow files and the like are left alone.
Each is loaded for every profile it defines, with the environment it names unset, so that
``${VAR:-}`` defaults are what is tested; a ``${VAR}`` without a default gets a value of the
right shape (a key for ``*KEY*`` variables), and a ``password_file`` a private temporary file.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbcli.config.load import TOP_LEVEL, load_config
from dbcli.config.typed import VAR
from dbcli.config.yamlfile import read_yaml

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)


def examples() -> list[Any]:
    found = [pytest.param(ROOT / "config.example.yaml", (ROOT / "config.example.yaml").read_text(),
                          id="config.example.yaml")]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if is_config(m.group(1)):
                line = text.count("\n", 0, m.start()) + 2
                found.append(pytest.param(doc, m.group(1), id=f"{doc.relative_to(ROOT)}:{line}"))
    return found


def is_config(text: str) -> bool:
    """A mapping with a config file's key at the top, or YAML that does not parse (that fails below)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return True
    return isinstance(data, dict) and any(key in TOP_LEVEL for key in data)


@pytest.mark.parametrize(("doc", "text"), examples())
def test_config_example_loads(doc: Path, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = tmp_path / "example.yaml"
    written.write_text(text, encoding="utf-8")
    data = read_yaml(written)  # dbcli's parser: plain YAML, no key twice
    for var, default in VAR.findall(text):
        monkeypatch.delenv(var, raising=False)
        if not default and f"${{{var}:-" not in text:  # a bare ${VAR}: the reader must export it
            monkeypatch.setenv(var, base64.b64encode(bytes(32)).decode() if "KEY" in var else "x")
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    written.write_text(yaml.safe_dump(_private_files(data, secret)), encoding="utf-8")
    for profile in (data.get("profiles") or {None: None}):
        load_config(str(written), profile)


def _private_files(value: Any, secret: Path) -> Any:
    if isinstance(value, dict):
        return {k: str(secret) if str(k).endswith("password_file") else _private_files(v, secret)
                for k, v in value.items()}
    return value
