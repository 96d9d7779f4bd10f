"""Shell completion, driven as the shells drive it: the real entry point in a subprocess, with the
command line in the environment (bash: COMP_WORDS/COMP_CWORD; zsh and fish: _TYPER_COMPLETE_ARGS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbcli.cli.completion import DEADLINE
from tests.helpers import write_config

BIN = str(Path(sys.executable).parent)  # the virtualenv's bin: the dbcli console script


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args, "-m", "dbcli"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout, check=False)


def bash_complete(line: str, *python_args: str) -> list[str]:
    """The candidates for the last word of ``line`` (empty when it ends with a space), as bash asks."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    done = run({"_DBCLI_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(cword)}, *python_args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.split()


def typer_complete(shell: str, line: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return run({"_DBCLI_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line, **extra})


# ---- the scripts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o default -F _dbcli_completion dbcli"),
    ("zsh", "#compdef dbcli"),
    ("fish", "complete --command dbcli"),
])
def test_show_completion_prints_the_script_of_each_shell(shell: str, marker: str) -> None:
    # the shell named wins over the one detected (Typer's flags printed the calling shell's script)
    done = subprocess.run([sys.executable, "-m", "dbcli", "--show-completion", shell], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_DBCLI_COMPLETE=complete_" in done.stdout
    source = run({"_DBCLI_COMPLETE": f"source_{shell}"})
    assert marker in source.stdout


@pytest.mark.parametrize(("shell", "script", "rc", "line"), [
    ("bash", ".bash_completions/dbcli.sh", ".bashrc", ".bash_completions/dbcli.sh"),
    ("zsh", ".zfunc/_dbcli", ".zshrc", "fpath+=~/.zfunc"),
    ("fish", ".config/fish/completions/dbcli.fish", None, None),
])
def test_install_completion_writes_where_the_shell_named_looks(tmp_path: Path, shell: str, script: str,
                                                               rc: str | None, line: str | None) -> None:
    home = tmp_path / "h"
    home.mkdir()
    # without XDG_CONFIG_HOME: fish's default place (tests/cli/test_completion_fish.py has the XDG one)
    env = {**{k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}, "HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "dbcli", "--install-completion", shell], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{shell} completion installed in {home / script}")
    assert f"_DBCLI_COMPLETE=complete_{shell}" in (home / script).read_text()
    if rc is not None:
        assert line in (home / rc).read_text()


def test_an_unsupported_shell_exits_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dbcli", "--show-completion", "sh"], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.startswith("Error: --show-completion: unsupported shell 'sh'")
    assert list(tmp_path.iterdir()) == []


def test_the_bash_script_completes_in_bash() -> None:
    """The generated script, sourced in a real bash, fills COMPREPLY through the console script."""
    script = ('source <(dbcli --show-completion bash); COMP_WORDS=(dbcli ta); COMP_CWORD=1; '
              '_dbcli_completion dbcli; echo "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["table"]


# ---- groups, commands, options ----------------------------------------------------------------

def test_groups_commands_and_options() -> None:
    assert bash_complete("dbcli ta") == ["table"]
    assert {"get", "grep"} & set(bash_complete("dbcli table g")) == {"get"}
    assert "--where" in bash_complete("dbcli table find --w")
    assert set(bash_complete("dbcli --")) >= {"--profile", "--config", "--install-completion", "--show-completion"}


# the console script, writing the command modules it imported to the file named in argv[1] at exit
LOADED = """
import atexit, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(" ".join(m for m in sys.modules if m.startswith("dbcli.cli.commands."))))
sys.argv = ["dbcli"]
from dbcli.__main__ import entry
entry()
"""


def test_completion_loads_only_the_group_being_completed(tmp_path: Path) -> None:
    record = tmp_path / "modules"
    done = subprocess.run([sys.executable, "-c", LOADED, str(record)], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "_DBCLI_COMPLETE": "complete_bash",
                                            "COMP_WORDS": "dbcli table g", "COMP_CWORD": "2"})
    assert done.stdout.split() == ["get"], done.stderr
    loaded = record.read_text().split()
    # the table group's modules (table, and what it registers from table_*), and no other group's
    assert "dbcli.cli.commands.table" in loaded
    assert all(m.startswith("dbcli.cli.commands.table") for m in loaded), loaded


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_requests(shell: str) -> None:
    extra = {"_TYPER_COMPLETE_FISH_ACTION": "get-args"} if shell == "fish" else {}
    done = typer_complete(shell, "dbcli repo", **extra)
    assert done.returncode == 0, done.stderr
    assert "report" in done.stdout and "table" not in done.stdout


# ---- dynamic values ---------------------------------------------------------------------------

def test_table_names(schema_config_file: Path) -> None:
    names = bash_complete("dbcli table get ")
    assert {"users", "orders", "products"} <= set(names)
    assert bash_complete("dbcli table describe user") == ["user_profiles", "users"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_table_names_in_zsh_and_fish(schema_config_file: Path, shell: str) -> None:
    extra = {"_TYPER_COMPLETE_FISH_ACTION": "get-args"} if shell == "fish" else {}
    done = typer_complete(shell, "dbcli table get user", **extra)
    assert "users" in done.stdout and "user_profiles" in done.stdout and "orders" not in done.stdout


def test_report_names(config_file: Path) -> None:
    from dbcli.reports.registry import BUILTIN_DIR

    builtin = sorted(p.stem for p in BUILTIN_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert bash_complete("dbcli report run ") == builtin
    assert bash_complete(f"dbcli report show {builtin[0][:3]}")[0] == builtin[0]


def test_collection_names(full_config_file: Path, mongo_server: Any, mongo_db: str) -> None:
    client = mongo_server.client()
    try:
        client[mongo_db]["events_x"].insert_one({"a": 1})
        client[mongo_db]["events_y"].insert_one({"a": 1})
    finally:
        client.close()
    assert bash_complete("dbcli collection find events") == ["events_x", "events_y"]
    assert bash_complete("dbcli collection distinct events_") == ["events_x", "events_y"]


def test_profile_names(tmp_path: Path, pg_server: Any, schema_db: str, pg_db: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"default_profile": "shop", "profiles": {
        "shop": {"postgres": {"dsn": pg_server.conninfo(schema_db)}},
        "empty": {"postgres": {"dsn": pg_server.conninfo(pg_db)}}}})
    assert bash_complete("dbcli --profile ") == ["empty", "shop"]
    assert bash_complete("dbcli -p s") == ["shop"]
    assert bash_complete("dbcli backup restore x --profile e") == ["empty"]
    # the values follow the profile named on the line
    assert "users" in bash_complete("dbcli table get ")
    assert bash_complete("dbcli -p empty table get ") == []


def test_profile_names_without_a_config_file() -> None:
    assert bash_complete("dbcli --profile ") == ["local"]


def test_backup_ids(schema_config_file: Path, cli: Any) -> None:
    done = cli("backup", "create", "--target", "postgres", "-f", "json")
    assert done.exit_code == 0, done.stderr
    backup_id = done.json()[0]["id"] if isinstance(done.json(), list) else done.json()["id"]
    assert bash_complete("dbcli backup verify ") == sorted([backup_id, "latest"])
    assert bash_complete(f"dbcli backup restore {backup_id[:6]}") == [backup_id]
    # a Citus cluster's backups too (their manifests in <repository>/cluster/backups/)
    made = done.json()[0] if isinstance(done.json(), list) else done.json()
    cluster_backups = Path(made["path"]).parent / "cluster" / "backups"
    cluster_backups.mkdir(parents=True)
    (cluster_backups / "20261207T020000Z-c.json").write_text("{}")
    assert bash_complete("dbcli backup verify ") == sorted([backup_id, "20261207T020000Z-c", "latest"])


# ---- servers that are down --------------------------------------------------------------------

@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a stuck server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_a_stuck_server_gives_no_candidates_within_the_deadline(tmp_path: Path, silent_port: int) -> None:
    write_config(tmp_path / "dbcli.yaml", {
        "postgres": {"host": "127.0.0.1", "port": silent_port, "dbname": "x", "user": "x", "connect_timeout": 30},
        "mongo": {"uri": f"mongodb://127.0.0.1:{silent_port}/", "connect_timeout": 30}})
    for line in ("dbcli table get ", "dbcli collection find "):
        start = time.monotonic()
        assert bash_complete(line) == []
        # the deadline plus a start of the interpreter, with room for a loaded machine
        assert time.monotonic() - start < DEADLINE + 2.5


def test_a_refused_connection_gives_no_candidates(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"host": "127.0.0.1", "port": port, "dbname": "x"}})
    assert bash_complete("dbcli table get ") == []


def test_a_broken_config_gives_no_candidates(tmp_path: Path) -> None:
    (tmp_path / "dbcli.yaml").write_text("postgres: [not, a, mapping\n")
    assert bash_complete("dbcli table get ") == []
    assert bash_complete("dbcli report run ") == []


def test_a_stopped_embedded_server_is_not_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"embedded": True, "data_dir": str(data_dir)}})
    assert bash_complete("dbcli table get ") == []
    assert not (data_dir / "postmaster.pid").exists()
