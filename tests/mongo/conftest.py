"""Fixtures of the MongoDB tests: a FerretDB of the test's own, to pause (SIGSTOP) without harming others."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def own_ferretdb(mongo_server: Any, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    if mongo_server.binary is None:
        pytest.skip("needs a FerretDB binary to start a server of its own")
    from dbcli.mongo.embedded import start_server, stop_engine

    data_dir = tmp_path / "ferretdb"
    data_dir.mkdir()
    proc, port = start_server(mongo_server.binary, "ferretdb", data_dir)
    yield proc, f"mongodb://127.0.0.1:{port}/"
    os.kill(proc.pid, signal.SIGCONT)
    stop_engine(proc, None)
