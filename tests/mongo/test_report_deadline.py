"""A MongoDB report gets ``reports.timeout``, not ``mongo.socket_timeout`` (issue 19, item 3).

Every dbcli MongoDB client has a socket timeout (``mongo.socket_timeout``, 60 s by default), but a
report may run for ``reports.timeout`` (300 s by default): the report now runs under
``pymongo.timeout(reports.timeout)``, which replaces the socket timeout for its round trips. The
server here is the test's own FerretDB, paused (SIGSTOP) while the report's aggregate is on the wire.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import monitoring

from tests.helpers import write_config

PAUSE = 2.0  # seconds the server stays paused: four socket timeouts


def resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the test already ended and stopped it
        os.kill(pid, signal.SIGCONT)


class PauseOnAggregate(monitoring.CommandListener):
    """Pauses the server as the first aggregate starts, and resumes it PAUSE seconds later."""

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate" and self.pid is not None:
            pid, self.pid = self.pid, None
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(PAUSE, resume, (pid,)).start()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_report_outlasts_the_socket_timeout_within_the_reports_timeout(
        own_ferretdb: Any, tmp_path: Path, load_cfg: Callable[..., Any]) -> None:
    from pymongo import MongoClient

    from dbcli.reports import mongo_runner, registry

    server, uri = own_ferretdb
    client: Any = MongoClient(uri, tz_aware=True)
    client.rep.user_activities.insert_one({"event_id": "e1", "user_id": 1, "type": "login", "day": "2025-03-01"})
    client.close()
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"uri": uri, "database": "rep", "connect_timeout": 5,
                                                     "socket_timeout": PAUSE / 4},
                                           "reports": {"timeout": 30}})
    cfg = load_cfg()
    report = registry.get(cfg, "activity-by-type")
    listener = PauseOnAggregate(server.pid)
    monitoring.register(listener)  # clients created from now on; pymongo has no unregister
    try:
        result = mongo_runner.run(cfg, report, report.resolve({"from": "2025-03-01", "to": "2025-03-01"}))
    finally:
        listener.pid = None
    assert [(r["type"], r["events"]) for r in result.rows] == [("login", 1)]


def test_a_report_over_the_reports_timeout_says_so(own_ferretdb: Any, tmp_path: Path,
                                                    load_cfg: Callable[..., Any]) -> None:
    from dbcli.errors import UnreachableError
    from dbcli.reports import mongo_runner, registry

    server, uri = own_ferretdb
    write_config(tmp_path / "dbcli.yaml", {"mongo": {"uri": uri, "database": "rep", "connect_timeout": 5},
                                           "reports": {"timeout": PAUSE / 4}})
    cfg = load_cfg()
    report = registry.get(cfg, "activity-by-type")
    listener = PauseOnAggregate(server.pid)
    monitoring.register(listener)
    try:
        with pytest.raises(UnreachableError, match="timed out after 0.5s"):
            mongo_runner.run(cfg, report, report.resolve({}))
    finally:
        listener.pid = None
