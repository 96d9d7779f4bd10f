"""A FerretDB that stops answering mid-bulk-write (SIGSTOP) ends the import with exit 4 within the
configured timeouts (issue 15: pymongo waited forever). The server is the test's own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import write_config

SOCKET_TIMEOUT = 2
SELECTION_TIMEOUT = 2
MARGIN = 6  # a retried write waits for server selection once more; CLI start-up; a loaded machine


def test_import_into_a_frozen_ferretdb_exits_4_within_the_limit(own_ferretdb: Any, tmp_path: Path) -> None:
    server, uri = own_ferretdb
    write_config(tmp_path / "dbcli.yaml", {"mongo": {
        "uri": uri, "database": "frozen", "connect_timeout": 2, "socket_timeout": SOCKET_TIMEOUT,
        "server_selection_timeout": SELECTION_TIMEOUT}})
    source = tmp_path / "events.jsonl"
    with open(source, "w") as fh:
        fh.writelines(json.dumps({"n": i, "pad": "x" * 200}) + "\n" for i in range(200_000))
    from pymongo import MongoClient

    watcher: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    proc = subprocess.Popen([sys.executable, "-m", "dbcli", "collection", "import", "events", str(source),
                             "--batch-size", "500"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not watcher.frozen.events.estimated_document_count():  # the bulk writes have begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        watcher.close()
        os.kill(server.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            _, err = proc.communicate(timeout=SOCKET_TIMEOUT + SELECTION_TIMEOUT + MARGIN)
        finally:
            took = time.monotonic() - started
            os.kill(server.pid, signal.SIGCONT)
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    assert err.startswith("Error: cannot reach MongoDB:") and "timed out" in err, err
    assert took < SOCKET_TIMEOUT + SELECTION_TIMEOUT + MARGIN


def test_timeouts_reach_the_driver(tmp_path: Path, load_cfg: Any) -> None:
    from dbcli.mongo.connection import client

    write_config(tmp_path / "dbcli.yaml", {"mongo": {
        "uri": "mongodb://127.0.0.1:1/", "connect_timeout": 1.5, "socket_timeout": 7, "timeout": 30}})
    mc = client(load_cfg())
    try:
        opts = mc.options
        assert (opts.pool_options.connect_timeout, opts.pool_options.socket_timeout) == (1.5, 7)
        assert opts.server_selection_timeout == 1.5  # follows connect_timeout unless set
        assert opts.timeout == 30
    finally:
        mc.close()
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"uri": "mongodb://127.0.0.1:1/", "socket_timeout": 0}})
    mc = client(load_cfg())
    try:
        assert mc.options.pool_options.socket_timeout is None  # 0: no limit
        assert mc.options.timeout is None
    finally:
        mc.close()
