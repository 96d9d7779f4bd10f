"""fish completion goes where fish reads it: ``$XDG_CONFIG_HOME/fish/completions`` when that is set
(Typer's install always wrote under ``~/.config``), from ``--install-completion fish`` and from a
plain ``--install-completion`` run in fish; the real fish then completes through it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the console script ``dbcli`` beside the interpreter

# CI installs fish (.ci/run): there a missing fish fails the tests instead of skipping them
pytestmark = pytest.mark.skipif(shutil.which("fish") is None and os.environ.get("CI") != "true",
                                reason="fish is not installed (apt-get install fish)")


def environment(tmp_path: Path, *, xdg: bool = True) -> dict[str, str]:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{BIN}:{os.environ['PATH']}",
           "XDG_DATA_HOME": str(tmp_path / "data")}  # fish keeps its history there
    env.pop("XDG_CONFIG_HOME", None)
    if xdg:
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    (tmp_path / "home").mkdir()
    return env


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "data" not in p.parts)


def test_install_completion_fish_honours_xdg_config_home(tmp_path: Path) -> None:
    env = environment(tmp_path)
    done = subprocess.run([sys.executable, "-m", "dbcli", "--install-completion", "fish"], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    script = tmp_path / "xdg" / "fish" / "completions" / "dbcli.fish"
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"fish completion installed in {script}\n")
    assert "_DBCLI_COMPLETE=complete_fish" in script.read_text()
    assert files(tmp_path) == ["xdg/fish/completions/dbcli.fish"]  # nothing under ~/.config


def test_install_completion_detected_in_fish_and_fish_completes(tmp_path: Path) -> None:
    env = environment(tmp_path)
    # "; true": fish stays dbcli's parent, where the shell is detected from
    done = subprocess.run(["fish", "-c", "dbcli --install-completion; true"], capture_output=True, text=True,
                          timeout=60, check=False, env=env)
    script = tmp_path / "xdg" / "fish" / "completions" / "dbcli.fish"
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"fish completion installed in {script}\n")
    assert not (tmp_path / "home" / ".config" / "fish" / "completions").exists()
    completed = subprocess.run(["fish", "-c", "complete -C 'dbcli ta'"], capture_output=True, text=True,
                               timeout=60, check=False, env=env)
    assert [line.split("\t")[0] for line in completed.stdout.splitlines()] == ["table"]


def test_without_xdg_config_home_fish_reads_home_config(tmp_path: Path) -> None:
    env = environment(tmp_path, xdg=False)
    done = subprocess.run(["fish", "-c", "dbcli --install-completion; true"], capture_output=True, text=True,
                          timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path) == ["home/.config/fish/completions/dbcli.fish"]
