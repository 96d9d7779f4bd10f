"""``schema diff`` on a Citus coordinator: the migrations distribute the scratch database too, so an
applied shop shows no drift (issue 18, item 3)."""

from __future__ import annotations

from pathlib import Path

from tests.fix_citus import CitusCluster
from tests.helpers import invoke


def test_schema_diff_after_apply_finds_no_drift(citus_cluster: CitusCluster, citus_shop: str, tmp_path: Path) -> None:
    config = citus_cluster.config_file(tmp_path, citus_shop)
    result = invoke(["--config", str(config), "schema", "diff", "--exit-code", "-f", "json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json() == []
