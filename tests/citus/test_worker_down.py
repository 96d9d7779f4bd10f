"""A worker that stops while the coordinator runs: `ping` exits 4 naming it; `local stop` and the next
command bring the whole cluster back (issue 18)."""

from __future__ import annotations

from pathlib import Path

from dbcli.postgres import citus_local, embedded
from tests.fix_citus import CitusCluster
from tests.helpers import invoke


def test_a_stopped_worker_makes_ping_exit_4_and_the_cluster_restarts(citus_cluster: CitusCluster,
                                                                      tmp_path: Path) -> None:
    cfg = citus_cluster.load(tmp_path, "dbcli")
    worker = citus_local.nodes(cfg)[2]
    port = embedded.running(worker.data_dir).port  # type: ignore[union-attr]
    assert embedded.stop(worker.data_dir)

    down = invoke(["ping", "-f", "json"])
    assert down.exit_code == 4
    rows = down.json()
    assert rows[0]["version"].endswith("1/2 workers active")
    assert rows[2] == {"server": "citus worker", "status": "unreachable", "version": None, "rtt_ms": None,
                       "target": f"127.0.0.1:{port}", "error": rows[2]["error"]}
    assert down.stderr.startswith("Error: citus worker is unreachable: ") and str(port) in down.stderr

    status = invoke(["local", "status", "-f", "json"]).json()
    assert [r["state"] for r in status if r["in_profile"]] == ["running", "running", "stopped"]

    stopped = invoke(["local", "stop"])
    assert stopped.exit_code == 0
    assert "citus coordinator: stopped" in stopped.stderr and "citus worker 2: was not running" in stopped.stderr
    up = invoke(["ping", "-f", "json"])
    assert up.exit_code == 0, up.stderr
    assert up.json()[0]["version"].endswith("2/2 workers active")
