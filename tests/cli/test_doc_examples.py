"""The runnable examples of README.md and docs/*.md, run as written.

A fenced ``sh`` block whose previous line is ``<!-- run -->`` is run with ``bash -e`` in an empty
directory holding a ./dbcli.yaml that points at a fresh PostgreSQL database with the shop schema,
seeded with ``dbcli seed --base-date 2025-01-01`` (both through the CLI, so the migrations are
recorded).
``<!-- run: mongo -->`` uses a fresh PostgreSQL database and a fresh MongoDB database instead, with
``dbcli schema apply`` and ``dbcli seed --users 200 --products 50 --orders 500 --events 2000
--base-date 2025-01-01`` run first. The installed ``dbcli`` (this virtualenv's) comes first on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fix_pg import PgServer
from tests.helpers import write_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- run(?:: (?P<needs>[a-z, ]+))? -->$")
BIN = str(Path(sys.executable).parent)
# a fixed end date: the pages name days of December 2024, whatever the seed's default becomes
BASE_DATE = ["--base-date", "2025-01-01"]
MONGO_SEED = ["--users", "200", "--products", "50", "--orders", "500", "--events", "2000", *BASE_DATE]


@dataclass(frozen=True)
class Example:
    page: str
    line: int  # of the opening fence, 1-based
    needs: frozenset[str]
    script: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def examples(pages: list[Path]) -> list[Example]:
    found = []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = MARKER.match(line.strip())
            if not m:
                continue
            fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
            assert fence == "```sh", f"{page.name}:{i + 1}: a run marker must precede a ```sh block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
            needs = frozenset(n.strip() for n in (m.group("needs") or "").split(",") if n.strip())
            assert needs <= {"mongo"}, f"{page.name}:{i + 1}: unknown need {sorted(needs)}"
            found.append(Example(str(page.relative_to(ROOT)), i + 2, needs, "\n".join(lines[i + 2:end])))
    return found


EXAMPLES = examples(PAGES)


def test_enough_examples_are_marked() -> None:
    assert len(EXAMPLES) >= 15


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def seeded_template(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database after `dbcli schema apply` and `dbcli seed` (defaults), cloned by every example."""
    name = pg_server.create_database()
    work = tmp_path_factory.mktemp("seed")
    config = write_config(work / "dbcli.yaml", {"postgres": {"dsn": pg_server.conninfo(name)}})
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data"),
           "XDG_CACHE_HOME": str(work / "cache")}
    for args in (["schema", "apply"], ["seed", *BASE_DATE]):
        done = subprocess.run([sys.executable, "-m", "dbcli", "-c", str(config), "-q", *args], cwd=work,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
    yield name
    pg_server.drop_database(name)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_runs(example: Example, request: pytest.FixtureRequest, tmp_path: Path,
                      pg_server: PgServer) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if "mongo" in example.needs:
        mongo = request.getfixturevalue("mongo_server")
        dbname = pg_server.create_database()
        request.addfinalizer(lambda: pg_server.drop_database(dbname))
        settings = {"postgres": {"dsn": pg_server.conninfo(dbname)},
                    "mongo": {"uri": mongo.uri, "database": request.getfixturevalue("mongo_db"),
                              "connect_timeout": 5}}
    else:
        dbname = pg_server.create_database(template=request.getfixturevalue("seeded_template"))
        request.addfinalizer(lambda: pg_server.drop_database(dbname))
        settings = {"postgres": {"dsn": pg_server.conninfo(dbname)}}
    write_config(work / "dbcli.yaml", settings)
    if "mongo" in example.needs:
        for args in (["schema", "apply"], ["seed", *MONGO_SEED]):
            prepared = run(["dbcli", "-q", *args], work)
            assert prepared.returncode == 0, prepared.stderr
    script = work.parent / "example.sh"
    script.write_text("set -e\n" + example.script + "\n", encoding="utf-8")
    done = run(["bash", str(script)], work)
    assert done.returncode == 0, (f"{example.id} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-3000:]}")
