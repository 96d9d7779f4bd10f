"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest


@pytest.fixture
def big_table(config_file: Path, pg_conninfo: str) -> str:
    """A table of 50,000 rows (about 5 MB of CSV): far more than a pipe's buffer (64 KiB) and the
    small file systems and file size limits of the fault tests."""
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)")
        conn.execute("INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 50000) i")
    return "big"
