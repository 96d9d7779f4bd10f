"""Collections and encryption: a ./dbcli.yaml on the test MongoDB, optionally with encryption settings."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_config

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()


@pytest.fixture
def mongo_config(tmp_path: Path, mongo_server: Any, mongo_db: str) -> Callable[..., Path]:
    """``mongo_config(encryption={...}, postgres={...})`` writes ./dbcli.yaml for the test database."""
    def _write(**sections: Any) -> Path:
        data: dict[str, Any] = {"mongo": {"uri": mongo_server.uri, "database": mongo_db, "connect_timeout": 5}}
        data.update({k: v for k, v in sections.items() if v is not None})
        return write_config(tmp_path / "dbcli.yaml", data)
    return _write


@pytest.fixture
def coll_db(mongo_server: Any, mongo_db: str) -> Any:
    """A pymongo handle on the test database, to look behind dbcli's back."""
    client = mongo_server.client()
    yield client[mongo_db]
    client.close()
