"""A local Citus cluster (a coordinator and two workers) for tests/citus: built and started once per run.

The extension is built by scripts/build-citus (cached under ~/.cache/dbcli; about 2 minutes the first
time on 2 cores). Without a C compiler or the vendored source the Citus tests skip with the reason;
under CI=true they fail instead. Each test database is prepared on every node by dbcli itself
(``postgres.dbname`` of the profile), exactly as a user's first command does.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbcli.config.load import load_config
from dbcli.postgres import citus_local, embedded
from dbcli.postgres.params import conn_params
from tests.helpers import invoke, write_config

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
# one seed for the cluster and the single node the tests compare it with
SEED: dict[str, Any] = {"users": 120, "products": 40, "orders": 600, "seed": 7,
                        "base_date": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the Citus cluster is required under CI=true: {reason}")
    pytest.skip(reason)


@dataclass
class CitusCluster:
    root: Path  # the profile's data dir; the nodes are under root/postgres
    install: Path

    def profile(self, dbname: str) -> dict[str, Any]:
        return {"data_dir": str(self.root),
                "postgres": {"embedded": True, "dbname": dbname,
                             "citus": {"workers": WORKERS, "install": str(self.install)}}}

    def config_file(self, directory: Path, dbname: str) -> Path:
        return write_config(directory / "dbcli.yaml", self.profile(dbname))

    def load(self, directory: Path, dbname: str) -> Any:
        return load_config(str(self.config_file(directory, dbname)))


@pytest.fixture(scope="session")
def citus_install() -> Path:
    if os.environ.get("DBCLI_TEST_PG_BIN"):
        # the cluster is the wheel's PostgreSQL 18 whatever server a pass targets: the main pass tests it
        pytest.skip("the Citus cluster runs on the wheel's PostgreSQL; tested in the pass without DBCLI_TEST_PG_BIN")
    try:
        # the wheel the script copies is the one this interpreter has installed
        done = subprocess.run([str(REPO / "scripts" / "build-citus")], capture_output=True, text=True,
                              timeout=1800, check=False, env={**os.environ, "DBCLI_PYTHON": sys.executable})
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"scripts/build-citus did not run: {e}")
    if done.returncode != 0:
        _unavailable(f"scripts/build-citus failed: {done.stderr.strip()[-300:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def citus_cluster(tmp_path_factory: pytest.TempPathFactory, citus_install: Path) -> Iterator[CitusCluster]:
    base = tmp_path_factory.mktemp("citus")
    cluster = CitusCluster(base / "data", citus_install)
    with pytest.MonkeyPatch.context() as mp:
        # the nodes' notes (servers.registry) stay in this run's temp dir, not in the user's data home
        mp.setenv("XDG_DATA_HOME", str(base / "xdg"))
        cfg = cluster.load(base, "dbcli")
        try:
            conn_params(cfg)  # starts the coordinator and the workers, prepares the database
        except Exception as e:
            _unavailable(f"the Citus cluster did not start: {e}")
        yield cluster
        for node in citus_local.nodes(cfg):
            embedded.stop(node.data_dir)


@pytest.fixture(scope="session")
def citus_shop(citus_cluster: CitusCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database on the cluster with the shop's schema applied and seeded (read-only for the tests)."""
    from dbcli.schema.apply import apply
    from dbcli.shop.seed.load import seed

    cfg = citus_cluster.load(tmp_path_factory.mktemp("citus-shop"), "shop")
    apply(cfg, target="postgres")
    seed(cfg, events=0, **SEED)
    return "shop"


@contextmanager
def archiving_cluster_config(citus_install: Path, base: Path, db: str) -> Iterator[Path]:
    """A config file whose default profile ``c`` is a local Citus cluster in ``base/data`` archiving
    its WAL into the repository ``base/repo``; the nodes are stopped at the end."""
    nodes = CitusCluster(base / "data", citus_install)
    profile = {**nodes.profile(db), "backup": {"dir": str(base / "repo"), "wal": True}}
    config = write_config(base / "dbcli.yaml", {"default_profile": "c", "profiles": {"c": profile}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(base / "xdg"))  # the nodes' notes stay in this run's temp dir
        try:
            yield config
        finally:
            for node in citus_local.nodes(load_config(str(config))):
                embedded.stop(node.data_dir)


def run_json(config: Path, *args: str, code: int = 0) -> Any:
    """``dbcli --config CONFIG ARGS -f json`` in-process: its JSON output, or the result when ``code`` is not 0."""
    result = invoke(["--config", str(config), *args, "-f", "json"])
    assert result.exit_code == code, result.stderr
    return result.json() if code == 0 else result
