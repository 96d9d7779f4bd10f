"""The local Citus cluster as dbcli starts it: nodes, roles, ping, stop; the config it needs (issue 18)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dbcli.postgres import citus_local
from tests.fix_citus import CitusCluster
from tests.helpers import invoke, write_config


def test_local_status_lists_the_coordinator_and_each_worker(citus_cluster: CitusCluster, tmp_path: Path) -> None:
    citus_cluster.config_file(tmp_path, "dbcli")
    result = invoke(["local", "status", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    mine = [r for r in result.json() if r["in_profile"]]
    assert [(r["server"], r["state"]) for r in mine] == [
        ("citus coordinator", "running"), ("citus worker 1", "running"), ("citus worker 2", "running")]
    assert all(r["data_dir"].startswith(str(citus_cluster.root)) for r in mine)


def test_nodes_listen_on_loopback_only_and_need_the_password_over_tcp(citus_cluster: CitusCluster,
                                                                      tmp_path: Path) -> None:
    cfg = citus_cluster.load(tmp_path, "dbcli")
    password = citus_local.password_file(cfg)
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    for node in citus_local.nodes(cfg):
        conf = (node.data_dir / "postgresql.conf").read_text()
        assert "listen_addresses = '127.0.0.1'" in conf
        hba = [line for line in (node.data_dir / "pg_hba.conf").read_text().splitlines()
               if line and not line.startswith("#")]
        assert hba == ["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"]


def test_nodes_keep_a_cheap_scram_verifier_of_the_random_password(citus_cluster: CitusCluster,
                                                                    tmp_path: Path) -> None:
    import psycopg

    from dbcli.postgres import embedded

    cfg = citus_cluster.load(tmp_path, "dbcli")
    invoke(["ping"])  # starts the cluster if another test stopped it
    password = citus_local.password_file(cfg).read_text().strip()
    for node in citus_local.nodes(cfg):
        server = embedded.running(node.data_dir)
        assert server is not None
        with psycopg.connect(**server.conninfo("postgres")) as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = current_user").fetchone()
        assert row is not None and row[0].startswith(f"SCRAM-SHA-256${citus_local.SCRAM_ITERATIONS}:")
        # and the password still opens a TCP session (as the coordinator's connections to the workers do)
        with psycopg.connect(host=citus_local.HOST, port=server.port, user=embedded.SUPERUSER, dbname="postgres",
                             password=password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_ping_reports_versions_and_active_workers(citus_cluster: CitusCluster, tmp_path: Path) -> None:
    citus_cluster.config_file(tmp_path, "dbcli")
    result = invoke(["ping", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert rows[0]["server"] == "postgres" and rows[0]["status"] == "ok"
    assert rows[0]["version"].startswith("PostgreSQL 18") and "Citus 14.0.1" in rows[0]["version"]
    assert rows[0]["version"].endswith("2/2 workers active")
    assert [(r["server"], r["status"]) for r in rows[1:]] == [("citus worker", "ok")] * 2


def test_no_citus_install_is_a_config_error_naming_the_build_script(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"data_dir": str(tmp_path / "data"),
                                           "postgres": {"embedded": True, "citus": {"workers": 2}}})
    os.environ.pop(citus_local.INSTALL_ENV, None)
    result = invoke(["ping"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "scripts/build-citus" in result.stderr
    write_config(tmp_path / "dbcli.yaml", {"data_dir": str(tmp_path / "data"), "postgres": {
        "embedded": True, "citus": {"workers": 2, "install": str(tmp_path / "nowhere")}}})
    result = invoke(["ping"])
    assert result.exit_code == 3 and "scripts/build-citus" in result.stderr


def test_citus_workers_need_the_embedded_server(tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": "postgresql://x@127.0.0.1/db",
                                                        "citus": {"workers": 2}}})
    result = invoke(["config", "show"])
    assert result.exit_code == 3
    assert "postgres.citus.workers: a local Citus cluster needs postgres.embedded: true" in result.stderr
