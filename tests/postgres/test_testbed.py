"""The test bed's PostgreSQL: version markers, and a cluster started from another PostgreSQL's binaries."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests import pg_cluster
from tests.fix_pg import PgServer, version_mismatch

DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.parametrize(("num", "spec", "reason"), [
    (150018, ">= 15", None),
    (150018, ">= 17", "needs PostgreSQL >= 17; the test server is 15.18"),
    (180001, ">= 17", None),
    (170004, ">= 15, < 18", None),
    (180001, ">= 15, < 18", "needs PostgreSQL >= 15, < 18; the test server is 18.1"),
    (150018, "== 15", None),
    (150018, "== 15.17", "needs PostgreSQL == 15.17; the test server is 15.18"),
    (160009, "!= 16", "needs PostgreSQL != 16; the test server is 16.9"),
])
def test_version_specs(num: int, spec: str, reason: str | None) -> None:
    assert version_mismatch(num, spec) == reason


@pytest.mark.parametrize("spec", ["17", ">= seventeen", "=> 17", ">= 15 < 18", ""])
def test_an_unreadable_spec_is_an_error_not_a_skip(spec: str) -> None:
    with pytest.raises(ValueError, match="pg marker: cannot read"):
        version_mismatch(150018, spec)


@pytest.mark.pg(">= 15")
def test_a_met_marker_runs_the_test(pg_server: PgServer) -> None:
    assert pg_server.major >= 15


def test_the_marker_skips_with_the_reason_under_ci_too(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(textwrap.dedent("""
        import pytest

        pytest_plugins = ["tests.fix_pg"]

        class Old:
            version_num = 150018

        @pytest.fixture(scope="session")
        def pg_server():
            return Old()
    """))
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.pg(">= 17")
        def test_new(pg_server):
            raise AssertionError("ran on 15")

        @pytest.mark.pg(">= 15")
        def test_old(pg_server):
            pass

        def test_unmarked():
            pass
    """))
    result = pytester.runpytest_inprocess("-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*needs PostgreSQL >= 17; the test server is 15.18*"])


@pytest.mark.skipif(not os.access(DEBIAN_15 / "initdb", os.X_OK) and os.environ.get("CI") != "true",
                    reason=f"no PostgreSQL 15 in {DEBIAN_15} (apt-get install postgresql-15)")
def test_a_cluster_from_debians_postgresql_15(tmp_path: Path) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    cluster = pg_cluster.start(tmp_path / "pg15", DEBIAN_15)
    try:
        assert pg_cluster.running(tmp_path / "pg15", DEBIAN_15) is not None
        with psycopg.connect(make_conninfo(**cluster.conninfo())) as conn:
            (num,) = conn.execute("SHOW server_version_num").fetchone() or ("",)
            assert num.startswith("15")
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # Unix socket only
        if os.geteuid() == 0:
            # PostgreSQL refuses root: the cluster belongs to the embedded server's user
            assert (cluster.data_dir / "PG_VERSION").stat().st_uid != 0
    finally:
        pg_cluster.stop(cluster)
    assert pg_cluster.running(tmp_path / "pg15", DEBIAN_15) is None
