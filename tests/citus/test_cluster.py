"""The local Citus cluster as dbcli starts it: nodes, roles, ping, stop; the config it needs (issue 18)."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from dbcli.config.model import Config
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


def _node_connections(cfg: Config) -> list[tuple[str, bool, str]]:
    """How the coordinator's connections reach each worker: (client address or 'socket', TLS, sslmode)."""
    import psycopg

    from dbcli.postgres import connection

    probe = ("SELECT coalesce(host(a.client_addr), 'socket') || ' ' || s.ssl || ' ' || current_setting('ssl')"
             " FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.pid = pg_backend_pid()")
    with psycopg.connect(connection.conninfo(cfg), autocommit=True) as conn:
        mode = conn.execute("SELECT current_setting('citus.node_conninfo')").fetchone()
        rows = conn.execute("SELECT success, result FROM run_command_on_workers(%s)", (probe,)).fetchall()
    assert mode is not None and all(ok for ok, _ in rows), rows
    return [(str(r).split()[0], str(r).split()[1] == "true", str(mode[0])) for _, r in rows]


def test_nodes_reach_each_other_through_their_sockets_without_tls(citus_cluster: CitusCluster,
                                                                  tmp_path: Path) -> None:
    """A loopback-only cluster: no TLS handshake and no SCRAM exchange on the coordinator's
    connections to the workers (pg_stat_ssl on each worker), while the nodes stay registered at
    127.0.0.1:port."""
    import psycopg

    from dbcli.postgres import connection, embedded

    cfg = citus_cluster.load(tmp_path, "dbcli")
    invoke(["ping"])  # starts the cluster if another test stopped it
    assert _node_connections(cfg) == [("socket", False, "sslmode=disable")] * 2
    with psycopg.connect(connection.conninfo(cfg)) as conn:
        registered = conn.execute("SELECT DISTINCT nodename FROM pg_dist_node").fetchall()
        routes = conn.execute("SELECT n.nodeport, p.poolinfo FROM pg_dist_node n JOIN pg_dist_poolinfo p"
                              " USING (nodeid) ORDER BY n.nodeid").fetchall()
    assert registered == [(citus_local.HOST,)]
    servers = [embedded.running(node.data_dir) for node in citus_local.nodes(cfg)]
    assert routes == [(s.port, f"host={s.socket_dir}") for s in servers if s is not None]


def test_worker_connections_work_after_a_restart_of_the_cluster(citus_cluster: CitusCluster,
                                                                tmp_path: Path) -> None:
    cfg = citus_cluster.load(tmp_path, "dbcli")
    citus_cluster.config_file(tmp_path, "dbcli")
    assert invoke(["local", "stop"]).exit_code == 0
    up = invoke(["ping", "-f", "json"])
    assert up.exit_code == 0, up.stderr
    assert up.json()[0]["version"].endswith("2/2 workers active")
    assert _node_connections(cfg) == [("socket", False, "sslmode=disable")] * 2


def test_a_report_runs_on_a_connection_of_the_applications_pool(citus_shop: str, citus_cluster: CitusCluster,
                                                                tmp_path: Path) -> None:
    """``pg_runner.query(pool=)``: the same rows as on a new connection, the session kept warm and
    given back read-write and idle."""
    from psycopg.pq import TransactionStatus

    from dbcli.postgres import connection
    from dbcli.reports import pg_runner, registry

    cfg = citus_cluster.load(tmp_path, citus_shop)
    report = registry.get(cfg, "user-orders")
    values = report.resolve({"user_id": "7"})
    expected = pg_runner.query(cfg, report, values)
    with connection.make_pool(cfg, min_size=1, max_size=1) as pool:
        assert pg_runner.query(cfg, report, values, pool=pool) == expected
        assert pg_runner.query(cfg, report, values, pool=pool) == expected
        with pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE and conn.read_only is False
            conn.execute("CREATE TEMP TABLE written (i int)")  # read-write again
    assert expected[1], "user 7 has orders in the seed"


def test_a_report_that_fails_on_a_pooled_connection_gives_it_back_usable(citus_shop: str,
                                                                          citus_cluster: CitusCluster,
                                                                          tmp_path: Path) -> None:
    from dbcli.errors import ConflictError
    from dbcli.postgres import connection
    from dbcli.reports import pg_runner, registry

    cfg = citus_cluster.load(tmp_path, citus_shop)
    report = registry.get(cfg, "user-orders")
    writer = dataclasses.replace(report, sql="UPDATE products SET price = price WHERE product_id = 0 RETURNING 1")
    with connection.make_pool(cfg, min_size=1, max_size=1) as pool:
        with pytest.raises(ConflictError, match="tried to write"):
            pg_runner.query(cfg, writer, {}, pool=pool)
        with pool.connection() as conn:
            assert conn.read_only is False
        assert pg_runner.query(cfg, report, report.resolve({"user_id": "7"}), pool=pool)[1]
